// Test-only (never built into dist): runs one workload of test-support.ts in this fresh process
// and prints its result, with the kernel threads it ran on, as the last line of stdout (JSON).
// See inChild() in test-support.ts. With SPIKEFLOW_TEST_REFUSE_SYNC=1 the process first refuses
// to compile modules of more than 4 KB synchronously, as browsers' main threads have, and prepares
// the kernels asynchronously (prepareKernels) as a backend's activation does.
import { activeThreads, prepareKernels } from './wasm.js';
import { convWorkload, kernelWorkload, networkWorkload, useWasm, type Workload } from './test-support.js';

const workload = process.argv[2] as Workload;
let prepared: boolean | undefined;
if (process.env['SPIKEFLOW_TEST_REFUSE_SYNC'] === '1') {
  const Sync = WebAssembly.Module;
  WebAssembly.Module = new Proxy(Sync, {
    construct(target, args: [BufferSource]) {
      if (args[0].byteLength > 4096) throw new RangeError('WebAssembly.Module is disallowed on the main thread, if the buffer size is larger than 4KB');
      return Reflect.construct(target, args) as object;
    },
  });
  prepared = await prepareKernels();
}
await useWasm();
const result = workload === 'kernels' ? { hash: kernelWorkload() } : workload === 'conv' ? await convWorkload() : await networkWorkload();
process.stdout.write(`\n${JSON.stringify({ ...result, threads: activeThreads(), ...(prepared === undefined ? {} : { prepared }) })}\n`);
