import type { GpuLike } from './webgpu.js';

/**
 * WebGPU in Node: the npm package `webgpu` (Dawn, with its prebuilt `dawn.node`) provides
 * `navigator.gpu` and the WebGPU globals (`GPUBufferUsage`, ...), which TensorFlow.js' webgpu
 * backend reads when it is imported. Dawn drives the GPU through Vulkan on Linux: the Vulkan
 * loader (`libvulkan.so.1`) and a driver, a GPU's own or, without a GPU, SwiftShader's (a CPU
 * implementation: correct, slow).
 */

/** Whether this is Node (not a browser, where `navigator.gpu` comes with the page). */
export function isNode(): boolean {
  return typeof process !== 'undefined' && typeof process.versions?.node === 'string';
}

/** What the `webgpu` package exports. */
interface DawnModule {
  create(flags: string[]): GpuLike;
  globals: Record<string, unknown>;
}

/** Where a Debian or Ubuntu Chromium keeps SwiftShader's Vulkan driver and its own Vulkan loader. */
export const debianChromiumDir = '/usr/lib/chromium';

/**
 * Puts Dawn's `navigator.gpu` (and the WebGPU globals) on `globalThis`. Returns why it could
 * not (the package is not installed, or does not load), or undefined. Once per process.
 */
export async function installDawn(): Promise<string | undefined> {
  const g = globalThis as { navigator?: { gpu?: unknown } };
  if (g.navigator?.gpu) return undefined;
  let dawn: DawnModule;
  try {
    // A name in a variable: bundlers for the browser must not try to resolve Node's WebGPU.
    const name = 'webgpu';
    dawn = (await import(/* @vite-ignore */ name)) as DawnModule;
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    if (err.code === 'ERR_MODULE_NOT_FOUND' && /'webgpu'/.test(err.message)) {
      return "WebGPU in Node needs the npm package 'webgpu' (Dawn), an optional peer of @spikeflow/backend-webgpu: install it beside spikeflow (pnpm add webgpu, or npm install webgpu)";
    }
    return `the npm package 'webgpu' (Dawn) did not load (${err.message}); it ships a prebuilt dawn.node for linux-x64/arm64, darwin and win32 only`;
  }
  Object.assign(globalThis, dawn.globals);
  // Node 21+ has a global navigator of its own; Node 20 has none.
  g.navigator ??= {};
  Object.defineProperty(g.navigator, 'gpu', { value: dawn.create([]), configurable: true, writable: true, enumerable: true });
  return undefined;
}

/** The directories the dynamic linker searches for a library by name (Linux, most common layouts). */
function libraryDirs(): string[] {
  const fromEnv = (process.env.LD_LIBRARY_PATH ?? '').split(':').filter(Boolean);
  const arch = process.arch === 'arm64' ? 'aarch64-linux-gnu' : 'x86_64-linux-gnu';
  return [...fromEnv, `/lib/${arch}`, `/usr/lib/${arch}`, '/lib64', '/usr/lib64', '/lib', '/usr/lib', '/usr/local/lib'];
}

/** Vulkan driver manifests (ICD JSON files) the Vulkan loader would read, as its environment says. */
function vulkanDrivers(fs: typeof import('node:fs')): { readonly from: string; readonly files: string[] } {
  const listed = process.env.VK_DRIVER_FILES ?? process.env.VK_ICD_FILENAMES;
  if (listed) return { from: process.env.VK_DRIVER_FILES ? 'VK_DRIVER_FILES' : 'VK_ICD_FILENAMES', files: listed.split(':').filter(Boolean) };
  const dirs = ['/etc/vulkan/icd.d', '/usr/local/share/vulkan/icd.d', '/usr/share/vulkan/icd.d'];
  const files = dirs.flatMap((d) =>
    fs.existsSync(d)
      ? fs
          .readdirSync(d)
          .filter((f) => f.endsWith('.json'))
          .map((f) => `${d}/${f}`)
      : [],
  );
  const added = (process.env.VK_ADD_DRIVER_FILES ?? '').split(':').filter(Boolean);
  return { from: 'the system', files: [...files, ...added] };
}

/**
 * Why Dawn found no adapter in Node, as precisely as the machine lets us say: which Vulkan
 * loader and drivers it would have used, and what to do about it.
 */
export async function noAdapterReason(): Promise<string> {
  if (process.platform !== 'linux') {
    return `Dawn (npm 'webgpu') found no WebGPU adapter on ${process.platform} (it uses Metal on macOS and Direct3D 12 on Windows: check that the GPU's driver is installed)`;
  }
  // A name in a variable, as for 'webgpu' above: browser bundles never load this.
  const fsName = 'node:fs';
  const fs = (await import(/* @vite-ignore */ fsName)) as typeof import('node:fs');
  const loader = libraryDirs().find((d) => fs.existsSync(`${d}/libvulkan.so.1`));
  const drivers = vulkanDrivers(fs);
  const swiftshader = `${debianChromiumDir}/vk_swiftshader_icd.json`;
  const hasSwiftShader = fs.existsSync(swiftshader);
  const remedy = hasSwiftShader
    ? `Without a GPU, SwiftShader (CPU; correct but slow) is here: run with LD_LIBRARY_PATH=${debianChromiumDir} VK_ICD_FILENAMES=${swiftshader}`
    : "Without a GPU, SwiftShader's driver comes with Debian's chromium-common (apt-get install chromium-common), then run with LD_LIBRARY_PATH=/usr/lib/chromium VK_ICD_FILENAMES=/usr/lib/chromium/vk_swiftshader_icd.json";
  if (!loader) {
    return `Dawn (npm 'webgpu') found no WebGPU adapter: there is no Vulkan loader (libvulkan.so.1 is in none of ${libraryDirs().join(', ')}). With a GPU, install its Vulkan driver and the loader (Debian: apt-get install libvulkan1). ${remedy}`;
  }
  const tried = drivers.files.length ? `${drivers.files.join(', ')} (from ${drivers.from})` : `none (${drivers.from} lists no Vulkan driver)`;
  return `Dawn (npm 'webgpu') found no WebGPU adapter: Vulkan loader ${loader}/libvulkan.so.1, drivers tried: ${tried}. Dawn needs a Vulkan 1.1 driver it accepts (a GPU's; Mesa's lavapipe 22 is refused). ${remedy}`;
}
