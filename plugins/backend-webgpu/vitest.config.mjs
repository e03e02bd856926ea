// WebGPU in Node runs on Dawn (npm `webgpu`), which drives Vulkan. On a machine without a GPU the
// tests use SwiftShader's Vulkan driver where Debian's chromium-common put it, together with the
// Vulkan loader that Chromium carries (libvulkan.so.1 in the same folder; Debian's libvulkan1 is
// not needed). The dynamic linker reads LD_LIBRARY_PATH only when a process starts, so it is set
// here, before vitest forks its test processes, which inherit it. SwiftShader is added beside the
// system's drivers (VK_ADD_DRIVER_FILES), so a machine with a GPU keeps its own driver.
import { existsSync } from 'node:fs';
import { defineConfig } from 'vitest/config';

const chromium = process.env.SPIKEFLOW_SWIFTSHADER_DIR ?? '/usr/lib/chromium';
if (existsSync(`${chromium}/vk_swiftshader_icd.json`)) {
  if (existsSync(`${chromium}/libvulkan.so.1`)) {
    process.env.LD_LIBRARY_PATH = [process.env.LD_LIBRARY_PATH, chromium].filter(Boolean).join(':');
  }
  if (!process.env.VK_ICD_FILENAMES && !process.env.VK_DRIVER_FILES) {
    process.env.VK_ADD_DRIVER_FILES = [process.env.VK_ADD_DRIVER_FILES, `${chromium}/vk_swiftshader_icd.json`].filter(Boolean).join(':');
  }
}

export default defineConfig({ test: { pool: 'forks' } });
