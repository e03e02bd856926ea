// Test-only (never built into dist): runs one workload of test-support.ts in this fresh process
// and prints its result, with the kernel threads it ran on, as the last line of stdout (JSON).
// See inChild() in test-support.ts.
import { activeThreads } from './wasm.js';
import { convWorkload, kernelWorkload, networkWorkload, useWasm, type Workload } from './test-support.js';

const workload = process.argv[2] as Workload;
await useWasm();
const result = workload === 'kernels' ? { hash: kernelWorkload() } : workload === 'conv' ? await convWorkload() : await networkWorkload();
process.stdout.write(`\n${JSON.stringify({ ...result, threads: activeThreads() })}\n`);
