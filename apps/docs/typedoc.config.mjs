// TypeDoc: the API reference of @spikeflow/core, @spikeflow/testing and @spikeflow/events as
// Markdown pages under docs/api/ (git-ignored), one page per export, with the sidebar VitePress
// reads (docs/api/typedoc-sidebar.json). `pnpm docs:build` runs it before VitePress.

/** @type {Partial<import('typedoc').TypeDocOptions & import('typedoc-plugin-markdown').PluginOptions & { docsRoot: string, sidebar: object }>} */
const config = {
  // Each package converted on its own, with its own tsconfig, then merged: the types one package
  // takes from another link across packages.
  entryPoints: ['../../packages/core', '../../packages/testing', '../../packages/events'],
  entryPointStrategy: 'packages',
  packageOptions: {
    // The package root only: @spikeflow/testing's './fixtures' subpath is also re-exported by
    // its index, so it is documented there.
    entryPoints: ['src/index.ts'],
    tsconfig: 'tsconfig.build.json',
    // core re-exports the whole TensorFlow.js namespace as `tf`: its page stays, the thousands
    // of TF.js members do not (they are documented at js.tensorflow.org).
    exclude: ['**/node_modules/@tensorflow/tfjs-*/**'],
  },
  plugin: ['typedoc-plugin-markdown', 'typedoc-vitepress-theme', './typedoc-plugin-tf.mjs'],
  out: '../../docs/api',
  docsRoot: '../../docs',
  name: 'API reference',
  readme: 'none',
  // One page per export (class, interface, function, type alias, variable, namespace), so that
  // "every export has a page" holds and is checked (src/site.test.ts).
  outputFileStrategy: 'members',
  sidebar: { autoConfiguration: true, format: 'vitepress', pretty: false, collapsed: true },
};

export default config;
