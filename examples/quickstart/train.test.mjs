import { expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

it('the quick start trains the pattern task to >= 80% held-out accuracy on wasm', () => {
  const script = fileURLToPath(new URL('./train.mjs', import.meta.url));
  const r = spawnSync(process.execPath, [script], { encoding: 'utf8' });
  expect(r.stderr).toBe('');
  expect(r.status).toBe(0);
  expect(r.stdout).toMatch(/backend: wasm/);
  const acc = Number(/held-out accuracy: ([\d.]+)%/.exec(r.stdout)?.[1]);
  expect(acc).toBeGreaterThanOrEqual(80);
}, 300_000);
