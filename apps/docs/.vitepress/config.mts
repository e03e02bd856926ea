// The documentation site: VitePress over the repository's docs/ folder, whose Markdown stays
// where it is and keeps working on GitHub, plus the API reference TypeDoc generates into
// docs/api/ (typedoc.config.mjs; git-ignored). `pnpm docs:build` builds it offline into
// apps/docs/dist/.
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type DefaultTheme, defineConfig } from 'vitepress';
import { isInside, SiteLinks } from '../src/site-links.js';
import { githubSlug, vitepressSlug } from '../src/slug.js';

const here = dirname(fileURLToPath(import.meta.url));
const repoRoot = resolve(here, '../../..');
const srcDir = resolve(repoRoot, 'docs');
const base = '/';
const links = new SiteLinks({ srcDir, repoRoot, base });
const vitepressEntry = createRequire(import.meta.url).resolve('vitepress');

/**
 * The API sidebars, from the one typedoc-vitepress-theme wrote (empty until TypeDoc has run): on a
 * package's pages, that package's exports by kind; on the API index, the packages. (One sidebar of
 * every export on every page would weigh ~200 kB per page: VitePress renders collapsed groups too.)
 */
function apiSidebars(): DefaultTheme.SidebarMulti {
  const file = resolve(srcDir, 'api/typedoc-sidebar.json');
  const packages = existsSync(file) ? (JSON.parse(readFileSync(file, 'utf8')) as DefaultTheme.SidebarItem[]) : [];
  const index: DefaultTheme.SidebarItem = { text: 'API reference', link: '/api/' };
  const sidebars: DefaultTheme.SidebarMulti = {
    '/api/': [{ ...index, items: packages.map(({ text, link }) => ({ text, link })) }],
  };
  for (const pkg of packages) {
    if (pkg.link) sidebars[pkg.link] = [index, { ...pkg, collapsed: false }];
  }
  return sidebars;
}

const guide: DefaultTheme.SidebarItem[] = [
  {
    text: 'Introduction',
    items: [
      { text: 'Overview', link: '/' },
      { text: 'Getting started', link: '/getting-started' },
      { text: 'Moving from snnTorch', link: '/snntorch' },
    ],
  },
  {
    text: 'Guides',
    items: [
      { text: 'Choosing a learning rule', link: '/choosing-a-rule' },
      { text: 'Learning rules', link: '/learning-rules' },
      { text: 'Writing plugins', link: '/plugins' },
      { text: 'Datasets', link: '/datasets' },
      { text: 'Backends', link: '/backends' },
      { text: 'Convolutional networks', link: '/conv' },
      { text: 'Interop: NIR', link: '/interop' },
      { text: 'Sweeps', link: '/sweeps' },
      { text: 'Scale-out', link: '/scale-out' },
    ],
  },
  {
    text: 'Reference',
    items: [
      { text: 'Benchmarks', link: '/benchmarks' },
      {
        text: 'Results',
        collapsed: true,
        items: [
          { text: 'Adding problem', link: '/results/add-task/' },
          { text: 'Row-wise MNIST', link: '/results/mnist-row/' },
          { text: 'Conv MNIST', link: '/results/mnist-conv/' },
          { text: 'TSSL-BP on MNIST', link: '/results/mnist-tssl/' },
        ],
      },
      { text: 'Architecture', link: '/architecture' },
      { text: 'Contributing', link: '/contributing' },
      { text: 'API reference', link: '/api/' },
    ],
  },
];

export default defineConfig({
  title: 'spikeflow',
  description: 'Train spiking neural networks through time, in TypeScript, on TensorFlow.js',
  lang: 'en-US',
  srcDir,
  outDir: resolve(here, '../dist'),
  cacheDir: resolve(here, 'cache'),
  // docs/results/<run>/README.md is that folder's page (as on GitHub): `results/add-task/`.
  rewrites: (page) => page.replace(/(^|\/)README\.md$/, '$1index.md'),
  cleanUrls: false,
  lastUpdated: false,
  // The site's data and page map in one shared chunk rather than inlined in every page.
  metaChunk: true,
  // No remote fonts (the default), no remote search: the built site works offline.
  useWebFonts: false,
  markdown: {
    // GitHub shows `{...}` at the end of a line as text; markdown-it-attrs would read it as HTML
    // attributes (interop.md's `{input → lif → ...}`).
    attrs: { disable: true },
    anchor: {
      // GitHub's ids on the hand-written pages, so that `page.md#heading` links work on GitHub
      // and here alike; VitePress's own on the generated API pages, as their links expect.
      slugifyWithState: (title: string, state: { env: { relativePath?: string } }) =>
        state.env.relativePath?.startsWith('api/') ? vitepressSlug(title) : githubSlug(title),
    },
    config: (md) => links.markdown(md),
  },
  vite: {
    // The local search index of ~450 pages is one chunk of ~1.2 MB, loaded when search opens.
    build: { chunkSizeWarningLimit: 2000 },
    plugins: [
      {
        // The pages live outside this package (docs/), where `vue` cannot be resolved (pnpm
        // installs it for VitePress only): resolve their imports of it as VitePress's own.
        name: 'spikeflow:vue-from-vitepress',
        enforce: 'pre',
        async resolveId(source, importer, options) {
          if (!importer || !/^vue($|\/)/.test(source) || !isInside(srcDir, importer)) return null;
          return this.resolve(source, vitepressEntry, { ...options, skipSelf: true });
        },
      },
      {
        name: 'spikeflow:site-links',
        configureServer(server) {
          server.middlewares.use((req, res, next) => {
            if (!req.url || !links.serve(req.url, res)) next();
          });
        },
      },
    ],
  },
  buildEnd(siteConfig) {
    links.writeTo(siteConfig.outDir);
  },
  themeConfig: {
    nav: [
      { text: 'Guide', link: '/getting-started', activeMatch: '^/(?!api/)' },
      { text: 'API', link: '/api/', activeMatch: '^/api/' },
    ],
    sidebar: {
      ...apiSidebars(),
      '/': guide,
    },
    outline: { level: [2, 3] },
    search: { provider: 'local' },
  },
});
