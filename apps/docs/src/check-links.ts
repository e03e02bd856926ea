/**
 * The link check of the Markdown sources (docs/**, README.md): every relative link and image must
 * name a file or folder that exists, inside the repository, and every `#anchor` a heading (or an
 * HTML `id`/`name`) of the page it points to, with the ids GitHub gives headings. Markdown is
 * parsed by VitePress's own markdown-it, so code blocks, reference links and inline HTML are read
 * as the site reads them.
 */
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { createMarkdownRenderer, type MarkdownRenderer } from 'vitepress';
import { isInside } from './site-links.js';
import { uniqueSlugs } from './slug.js';

export interface LinkProblem {
  /** The page, relative to the root given to the check. */
  file: string;
  /** The line of the block the link is in (1-based). */
  line: number;
  link: string;
  problem: string;
}

export interface FoundLink {
  href: string;
  line: number;
  kind: 'link' | 'image';
}

export interface ParsedPage {
  links: FoundLink[];
  /** The ids a link may name with `#`: headings (GitHub's slugs) and HTML `id`/`name` attributes. */
  anchors: Set<string>;
}

const external = /^(?:[a-z][a-z\d+.-]*:|\/\/)/i;
const htmlAttr = (name: string) => new RegExp(`<[a-z][^>]*?\\s${name}\\s*=\\s*(?:"([^"]*)"|'([^']*)')`, 'gi');

let renderer: Promise<MarkdownRenderer> | undefined;
/** One markdown-it for all pages: VitePress's, as the site configures it, less the headings' permalinks. */
function markdown(): Promise<MarkdownRenderer> {
  renderer ??= createMarkdownRenderer(process.cwd(), { attrs: { disable: true }, anchor: { permalink: undefined } });
  return renderer;
}

/** Links, images and anchors of one Markdown page. */
export async function parsePage(source: string): Promise<ParsedPage> {
  const md = await markdown();
  const tokens = md.parse(source, {});
  const links: FoundLink[] = [];
  const headings: string[] = [];
  const anchors = new Set<string>();
  const fromHtml = (html: string, line: number) => {
    for (const name of ['href', 'src'] as const) {
      for (const m of html.matchAll(htmlAttr(name))) links.push({ href: m[1] ?? m[2] ?? '', line, kind: name === 'src' ? 'image' : 'link' });
    }
    for (const name of ['id', 'name']) for (const m of html.matchAll(htmlAttr(name))) anchors.add(m[1] ?? m[2] ?? '');
  };
  let line = 1;
  for (let i = 0; i < tokens.length; i++) {
    const t = tokens[i]!;
    if (t.map) line = t.map[0] + 1;
    if (t.type === 'html_block') fromHtml(t.content, line);
    if (t.type === 'heading_open') {
      const inline = tokens[i + 1];
      let text = '';
      for (const c of inline?.children ?? []) if (c.type === 'text' || c.type === 'code_inline') text += c.content;
      headings.push(text);
    }
    for (const c of t.children ?? []) {
      if (c.type === 'link_open') links.push({ href: c.attrGet('href') ?? '', line, kind: 'link' });
      else if (c.type === 'image') links.push({ href: c.attrGet('src') ?? '', line, kind: 'image' });
      else if (c.type === 'html_inline') fromHtml(c.content, line);
    }
  }
  for (const id of uniqueSlugs(headings)) anchors.add(id);
  return { links, anchors };
}

/** Every `*.md` file under `dir`, skipping `node_modules` and the folders named in `skip` (absolute paths). */
export function markdownFiles(dir: string, skip: readonly string[] = []): string[] {
  const out: string[] = [];
  const walk = (d: string) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      if (e.isDirectory()) {
        if (e.name !== 'node_modules' && !e.name.startsWith('.') && !skip.includes(p)) walk(p);
      } else if (e.isFile() && e.name.endsWith('.md')) out.push(p);
    }
  };
  walk(dir);
  return out.sort();
}

/**
 * Checks the links of the given Markdown files. `root` is the repository: no link may leave it,
 * and problems name files relative to it.
 */
export async function checkLinks(files: readonly string[], root: string): Promise<LinkProblem[]> {
  const problems: LinkProblem[] = [];
  const pages = new Map<string, Promise<ParsedPage>>();
  const page = (file: string) => {
    let p = pages.get(file);
    if (!p) {
      p = parsePage(readFileSync(file, 'utf8'));
      pages.set(file, p);
    }
    return p;
  };
  for (const file of files) {
    const report = (l: FoundLink, problem: string) => problems.push({ file: relative(root, file), line: l.line, link: l.href, problem });
    for (const l of (await page(file)).links) {
      if (external.test(l.href)) continue;
      if (l.href === '') {
        report(l, 'empty link');
        continue;
      }
      const [, rawPath = '', hash] = /^([^#?]*)(?:\?[^#]*)?(?:#(.*))?$/s.exec(l.href) ?? [];
      let path: string;
      let anchor: string | undefined;
      try {
        path = decodeURIComponent(rawPath);
        anchor = hash === undefined ? undefined : decodeURIComponent(hash);
      } catch {
        report(l, 'malformed percent-encoding');
        continue;
      }
      const target = path === '' ? file : path.startsWith('/') ? join(root, path) : resolve(dirname(file), path);
      if (!isInside(root, target)) {
        report(l, 'points outside the repository');
        continue;
      }
      if (!existsSync(target)) {
        report(l, `no such ${path.endsWith('/') ? 'folder' : 'file'}: ${relative(root, target)}`);
        continue;
      }
      if (anchor === undefined || anchor === '') continue;
      if (statSync(target).isDirectory()) {
        report(l, 'an anchor on a folder');
        continue;
      }
      if (!target.endsWith('.md')) continue; // `#L10` on source files: GitHub's, not checked
      if (!(await page(target)).anchors.has(anchor)) report(l, `no heading or id '${anchor}' in ${relative(root, target)}`);
    }
  }
  return problems;
}

/** The problems as lines, `file:line: link — problem`. */
export function formatProblems(problems: readonly LinkProblem[]): string {
  return problems.map((p) => `${p.file}:${p.line}: ${p.link} — ${p.problem}`).join('\n');
}
