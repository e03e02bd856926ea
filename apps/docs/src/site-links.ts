/**
 * Links from the docs to files that are no page of the site. The Markdown under docs/ is written
 * for GitHub, where a link may name any file or folder of the repository: the bench's JSON and
 * SVG (`bench/online-rules/lif.json`), a folder of results (`bench/conv/`), a README outside
 * docs/ (`../tools/peers/README.md`). VitePress bundles images, but leaves a plain link to a
 * `.json` or `.svg` as it is without copying the file, and reports a link to a folder or to a
 * Markdown file outside its source folder as dead. Here such a link is kept working on the site:
 *
 * - a file under docs/ is copied to the same place in the output, so the link stays as written;
 * - a folder under docs/ with no page of its own gets a generated `index.html` listing its files
 *   (copied too) and subfolders (listed in turn);
 * - a file or folder of the repository outside docs/ is copied (or listed) under `_repo/` with its
 *   path in the repository, and the link is rewritten to point there.
 *
 * A link to `x/README.md` under docs/ becomes a link to `x/`, the page the site makes of it.
 *
 * Each link to a file gets `target="_self"`: VitePress's link handling then leaves it alone (no dead
 * link report, no client-side routing to a page that does not exist), and the browser loads the
 * file. A link whose target does not exist is left to VitePress's dead-link check and to the link
 * check of the tests.
 */
import { copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import type { ServerResponse } from 'node:http';
import { dirname, isAbsolute, join, relative, resolve, sep } from 'node:path';
import type { MarkdownRenderer } from 'vitepress';

export interface SiteLinkOptions {
  /** VitePress's source folder (docs/). */
  srcDir: string;
  /** The repository's root: links may reach anything below it. */
  repoRoot: string;
  /** The site's base path (`/`). */
  base: string;
}

type Token = ReturnType<MarkdownRenderer['parse']>[number];

const external = /^(?:[a-z][a-z\d+.-]*:|\/\/)/i;

/** Whether `path` lies inside the folder `dir` (or is it). */
export function isInside(dir: string, path: string): boolean {
  const rel = relative(dir, path);
  return rel === '' || (rel !== '..' && !rel.startsWith(`..${sep}`) && !isAbsolute(rel));
}

/** A page's folder: VitePress serves `dir/` from `dir/index.md`, and `README.md` is rewritten to `index.md`. */
function hasPage(dir: string): boolean {
  return existsSync(join(dir, 'index.md')) || existsSync(join(dir, 'README.md'));
}

const escapeHtml = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');

export class SiteLinks {
  /** Files to copy into the output (absolute paths). */
  readonly files = new Set<string>();
  /** Folders to list in the output (absolute paths). */
  readonly dirs = new Set<string>();
  private readonly srcDir: string;
  private readonly repoRoot: string;
  private readonly base: string;

  constructor(options: SiteLinkOptions) {
    this.srcDir = resolve(options.srcDir);
    this.repoRoot = resolve(options.repoRoot);
    this.base = options.base.endsWith('/') ? options.base : `${options.base}/`;
  }

  /** Where a file or folder of the repository lands in the site's output, relative to it. */
  sitePath(abs: string): string {
    const rel = isInside(this.srcDir, abs) ? relative(this.srcDir, abs) : join('_repo', relative(this.repoRoot, abs));
    return rel.split(sep).join('/');
  }

  /**
   * Rewrites one link found in the page `from` when the site needs it otherwise than GitHub, and
   * records what the output must then hold. Returns the new href, and whether it is a static file
   * (`target="_self"`) rather than a page; undefined leaves the link alone.
   */
  rewrite(href: string, from: string): { href: string; file: boolean } | undefined {
    if (!href || href.startsWith('#') || href.startsWith('/') || external.test(href)) return undefined;
    const [, rawPath = '', rest = ''] = /^([^?#]*)(.*)$/s.exec(href) ?? [];
    if (!rawPath) return undefined;
    let path: string;
    try {
      path = decodeURIComponent(rawPath);
    } catch {
      return undefined;
    }
    const abs = resolve(dirname(from), path);
    if (!isInside(this.repoRoot, abs) || !existsSync(abs)) return undefined;
    const inside = isInside(this.srcDir, abs);
    const isDir = statSync(abs).isDirectory();
    if (inside && isDir && hasPage(abs)) return undefined; // `dir/`: VitePress serves its index page
    if (inside && !isDir && abs.endsWith('.md')) {
      // A page. `x/README.md` is served as `x/index.html` (the rewrite in the config), which
      // VitePress does not apply to links: link to the folder.
      return /(^|\/)README\.md$/.test(rawPath) ? { href: `${rawPath.slice(0, -'README.md'.length) || './'}${rest}`, file: false } : undefined;
    }
    (isDir ? this.dirs : this.files).add(abs);
    if (inside) return { href: isDir && !rawPath.endsWith('/') ? `${rawPath}/${rest}` : href, file: true };
    return { href: `${this.base}${encodeURI(this.sitePath(abs))}${isDir ? '/' : ''}${rest}`, file: true };
  }

  /** The markdown-it plugin: a core rule over every link of a page (VitePress's `markdown.config`). */
  readonly markdown = (md: MarkdownRenderer): void => {
    md.core.ruler.push('spikeflow_site_links', (state) => {
      const env = state.env as { realPath?: string; path?: string };
      const from = env.realPath ?? env.path;
      if (!from) return;
      const visit = (tokens: Token[]) => {
        for (const token of tokens) {
          if (token.children) visit(token.children);
          if (token.type !== 'link_open' || token.attrGet('target') !== null) continue;
          const href = token.attrGet('href');
          const rewritten = href === null ? undefined : this.rewrite(href, from);
          if (rewritten === undefined) continue;
          token.attrSet('href', rewritten.href);
          if (rewritten.file) token.attrSet('target', '_self');
        }
      };
      visit(state.tokens);
    });
  };

  /** The page listing a folder: its files and subfolders, linked relative to it. */
  listing(dir: string): string {
    const entries = readdirSync(dir, { withFileTypes: true })
      .filter((e) => !e.name.startsWith('.') && (e.isFile() || e.isDirectory()))
      .sort((a, b) => Number(b.isDirectory()) - Number(a.isDirectory()) || a.name.localeCompare(b.name));
    const items = entries.map((e) => {
      let href = e.isDirectory() ? `${e.name}/` : e.name;
      if (e.isFile() && e.name.endsWith('.md') && isInside(this.srcDir, dir))
        href = /^(README|index)\.md$/.test(e.name) ? './' : e.name.replace(/\.md$/, '.html');
      const label = e.isDirectory() ? `${e.name}/` : e.name;
      return `<li><a href="${escapeHtml(encodeURI(href))}">${escapeHtml(label)}</a></li>`;
    });
    const where = isInside(this.srcDir, dir) ? `docs/${relative(this.srcDir, dir)}` : relative(this.repoRoot, dir);
    const title = `${where.split(sep).join('/')}/`;
    return [
      '<!doctype html>',
      '<html lang="en-US">',
      '<head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">',
      `<title>${escapeHtml(title)} · spikeflow</title>`,
      '<style>body{font:16px/1.6 system-ui,sans-serif;max-width:48rem;margin:2rem auto;padding:0 1rem;color:#222}a{color:#3451b2}code{font-size:.95em}</style>',
      '</head>',
      '<body>',
      `<p><a href="${escapeHtml(this.base)}">spikeflow documentation</a></p>`,
      `<h1><code>${escapeHtml(title)}</code></h1>`,
      '<p>The files of this folder of the repository, as the pages link to them.</p>',
      `<ul>\n${items.join('\n')}\n</ul>`,
      '</body>',
      '</html>',
      '',
    ].join('\n');
  }

  /** Writes what the recorded links need into the built site (VitePress's `buildEnd`). */
  writeTo(outDir: string): { files: number; listings: number } {
    let files = 0;
    let listings = 0;
    const copy = (abs: string) => {
      const to = join(outDir, this.sitePath(abs));
      if (existsSync(to)) return;
      mkdirSync(dirname(to), { recursive: true });
      copyFileSync(abs, to);
      files++;
    };
    const list = (dir: string) => {
      const index = join(outDir, this.sitePath(dir), 'index.html');
      if (!existsSync(index)) {
        mkdirSync(dirname(index), { recursive: true });
        writeFileSync(index, this.listing(dir));
        listings++;
      }
      for (const e of readdirSync(dir, { withFileTypes: true })) {
        if (e.name.startsWith('.')) continue;
        const abs = join(dir, e.name);
        if (e.isDirectory()) list(abs);
        else if (e.isFile() && !(e.name.endsWith('.md') && isInside(this.srcDir, abs))) copy(abs);
      }
    };
    for (const f of this.files) copy(f);
    for (const d of this.dirs) list(d);
    return { files, listings };
  }

  /**
   * The same files in `vitepress dev`: Vite serves docs/'s own files already; this answers the
   * folder listings and the `_repo/` copies, for what the rendered pages have linked so far.
   */
  serve(url: string, res: ServerResponse): boolean {
    let path: string;
    try {
      path = decodeURIComponent(url.replace(/[?#].*$/s, ''));
    } catch {
      return false;
    }
    if (!path.startsWith(this.base)) return false;
    const rel = path.slice(this.base.length);
    const abs = rel.startsWith('_repo/') ? join(this.repoRoot, rel.slice('_repo/'.length)) : join(this.srcDir, rel);
    const known = (p: string) => this.files.has(p) || [...this.dirs].some((d) => isInside(d, p));
    if (!known(abs.replace(/[/\\]$/, '')) || !existsSync(abs)) return false;
    if (statSync(abs).isDirectory()) {
      res.setHeader('Content-Type', 'text/html; charset=utf-8');
      res.end(this.listing(abs.replace(/[/\\]$/, '')));
    } else {
      res.setHeader('Content-Type', abs.endsWith('.json') ? 'application/json' : abs.endsWith('.svg') ? 'image/svg+xml' : 'text/plain; charset=utf-8');
      res.end(readFileSync(abs));
    }
    return true;
  }
}
