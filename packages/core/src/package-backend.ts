import type { Backend, BackendInfo } from './backend.js';
import { SpikeflowError } from './errors.js';
import type { KernelRegistration } from './kernels.js';
import { tf } from './tf.js';

/**
 * A backend whose tfjs implementation is a package the user installs only if they need it (an
 * optional peer dependency of the plugin, such as `@tensorflow/tfjs-node`), often with a native
 * binding that its install script downloads.
 */
export interface PackageBackendSpec {
  /** Name in configs and on the command line (`node`, `node-gpu`). */
  readonly name: string;
  readonly description: string;
  /** The package the user installs (`@tensorflow/tfjs-node`). */
  readonly packageName: string;
  /** The tfjs backend the package registers (`tensorflow`). */
  readonly tfBackend: string;
  /** Imports the package; the plugin passes it, so that the import resolves where the plugin is installed. */
  readonly load: () => Promise<unknown>;
  /** How to install the package (shown when it is missing). */
  readonly install: string;
  /** Why the native binding may fail to load and how to fix it (shown when the import throws). */
  readonly bindingHelp: string;
  /** The device(s) and facts for `describe()`, once active. */
  readonly device?: () => { device: string; threads?: number; details?: Readonly<Record<string, string | number | boolean>> };
  readonly kernels?: readonly KernelRegistration[];
}

type Loaded = { readonly ok: true } | { readonly ok: false; readonly message: string; readonly cause?: unknown };

/**
 * Whether `e` says that `pkg` itself (not something inside it) could not be found: Node's
 * resolution error naming it, or a bundler's (Vite, vitest) "could not resolve" for it.
 */
function isMissing(e: unknown, pkg: string): boolean {
  const code = (e as { code?: unknown })?.code;
  const message = String((e as { message?: unknown })?.message ?? e);
  if (code === 'ERR_MODULE_NOT_FOUND' || code === 'MODULE_NOT_FOUND') return message.includes(`'${pkg}'`);
  return new RegExp(`^(Could not resolve|Failed to resolve import|Failed to load url) "?${pkg.replace(/[/.-]/g, '\\$&')}"?`).test(message);
}

/**
 * A {@link Backend} for a tfjs backend package that may be absent. `isAvailable()` says whether the
 * package imports, its native binding loads and its backend registers with the tfjs that spikeflow
 * uses; `activate()` fails with a `BACKEND_UNAVAILABLE` error that says which of these went wrong
 * and how to fix it. The import is tried once per process.
 */
export function packageBackend(spec: PackageBackendSpec): Backend {
  let loading: Promise<Loaded> | undefined;
  const load = () =>
    (loading ??= spec.load().then(
      (): Loaded => {
        if (tf.findBackendFactory(spec.tfBackend) !== null) return { ok: true };
        return {
          ok: false,
          message:
            `${spec.packageName} loaded but its '${spec.tfBackend}' backend is not registered with spikeflow's TensorFlow.js ` +
            `(@tensorflow/tfjs-core ${tf.version_core}): it registered with another copy. Install ${spec.packageName}@${tf.version_core}, the version spikeflow uses`,
        };
      },
      (e: unknown): Loaded =>
        isMissing(e, spec.packageName)
          ? { ok: false, message: `${spec.packageName} is not installed. Install it with: ${spec.install}`, cause: e }
          : {
              ok: false,
              message: `${spec.packageName} is installed, but it did not load (${String((e as Error)?.message ?? e).split('\n')[0]}). ${spec.bindingHelp}`,
              cause: e,
            },
    ));
  return {
    name: spec.name,
    description: spec.description,
    ...(spec.kernels ? { kernels: spec.kernels } : {}),
    isAvailable: async () => (await load()).ok,
    async activate() {
      const r = await load();
      if (!r.ok)
        throw new SpikeflowError(
          'BACKEND_UNAVAILABLE',
          `backend '${spec.name}': ${r.message}`,
          { backend: spec.name, package: spec.packageName },
          r.cause === undefined ? undefined : { cause: r.cause },
        );
      if (!(await tf.setBackend(spec.tfBackend))) {
        throw new SpikeflowError(
          'BACKEND_UNAVAILABLE',
          `backend '${spec.name}': ${spec.packageName} registered '${spec.tfBackend}', but it failed to start. ${spec.bindingHelp}`,
          { backend: spec.name },
        );
      }
      await tf.ready();
    },
    describe(): BackendInfo {
      const d = spec.device?.() ?? { device: spec.description };
      return {
        tfBackend: spec.tfBackend,
        device: d.device,
        threads: d.threads ?? 1,
        details: { tfjs: tf.version_core, package: spec.packageName, ...d.details },
      };
    },
  };
}
