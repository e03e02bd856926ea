import { describe, expect, it } from 'vitest';
import { isSpikeflowError } from './errors.js';
import { packageBackend, type PackageBackendSpec } from './package-backend.js';
import { tf } from './tf.js';

const spec = (over: Partial<PackageBackendSpec>): PackageBackendSpec => ({
  name: 'native',
  description: 'a native backend',
  packageName: '@example/tfjs-native',
  tfBackend: 'example-native',
  load: async () => undefined,
  install: 'npm i @example/tfjs-native@4.22.0',
  bindingHelp: 'Its install script downloads libexample; run it again.',
  ...over,
});

async function activationError(b: ReturnType<typeof packageBackend>): Promise<Error> {
  try {
    await b.activate();
  } catch (e) {
    return e as Error;
  }
  throw new Error('expected activate() to fail');
}

describe('packageBackend', () => {
  it('a missing package: unavailable, and activate() says how to install it', async () => {
    const b = packageBackend(spec({ load: () => import('@example/tfjs-native' as string) }));
    expect(await b.isAvailable()).toBe(false);
    const e = await activationError(b);
    expect(isSpikeflowError(e, 'BACKEND_UNAVAILABLE')).toBe(true);
    expect(e.message).toBe("backend 'native': @example/tfjs-native is not installed. Install it with: npm i @example/tfjs-native@4.22.0");
  });

  it("a bundler's unresolved import (Vite, vitest) counts as missing too; something missing inside the package does not", async () => {
    const viaVite = packageBackend(
      spec({ load: async () => Promise.reject(new Error('Could not resolve "@example/tfjs-native" imported by "@spikeflow/x".')) }),
    );
    expect((await activationError(viaVite)).message).toMatch(/is not installed\. Install it with/);
    const inner = Object.assign(new Error("Cannot find package 'adm-zip' imported from /x/node_modules/@example/tfjs-native/index.js"), {
      code: 'ERR_MODULE_NOT_FOUND',
    });
    expect((await activationError(packageBackend(spec({ load: async () => Promise.reject(inner) })))).message).toMatch(
      /is installed, but it did not load \(Cannot find package 'adm-zip'/,
    );
  });

  it('a binding that fails to load: says so, with the loader error and the fix', async () => {
    let calls = 0;
    const b = packageBackend(
      spec({
        load: async () => {
          calls++;
          throw new Error('libexample.so.2: cannot open shared object file: No such file or directory\n    at Module._extensions');
        },
      }),
    );
    const e = await activationError(b);
    expect(e.message).toBe(
      "backend 'native': @example/tfjs-native is installed, but it did not load (libexample.so.2: cannot open shared object file: No such file or directory). Its install script downloads libexample; run it again.",
    );
    await b.isAvailable();
    expect(calls).toBe(1);
  });

  it('a package that registered nothing with this tfjs: names the version to install', async () => {
    const e = await activationError(packageBackend(spec({})));
    expect(e.message).toMatch(new RegExp(`registered with another copy\\. Install @example/tfjs-native@${tf.version_core.replace(/\./g, '\\.')}`));
  });

  it('a package that registers its backend: available, activated, described', async () => {
    const b = packageBackend(
      spec({
        tfBackend: 'example-cpu-alias',
        load: async () => {
          const cpu = tf.findBackendFactory('cpu')!;
          tf.registerBackend('example-cpu-alias', cpu);
        },
        device: () => ({ device: 'Example GPU', threads: 2, details: { memoryGiB: 8 } }),
      }),
    );
    await tf.setBackend('cpu');
    try {
      expect(await b.isAvailable()).toBe(true);
      await b.activate();
      expect(tf.getBackend()).toBe('example-cpu-alias');
      expect(b.describe()).toEqual({
        tfBackend: 'example-cpu-alias',
        device: 'Example GPU',
        threads: 2,
        details: { tfjs: tf.version_core, package: '@example/tfjs-native', memoryGiB: 8 },
      });
    } finally {
      await tf.setBackend('cpu');
      tf.removeBackend('example-cpu-alias');
    }
  });
});
