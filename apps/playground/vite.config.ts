import { defineConfig } from 'vite';

// The page reads the gradient fixtures from the testing package (JSON, bundled at build time).
export default defineConfig({
  build: { target: 'esnext', outDir: 'dist', emptyOutDir: true, chunkSizeWarningLimit: 4096 },
  server: { fs: { allow: ['../..'] } },
});
