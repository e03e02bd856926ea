/**
 * The link check of the built site: every `href` and `src` of every HTML page that points into the
 * site must name a file of the output (a folder: its `index.html`), and every `#anchor` on an HTML
 * page an `id` of that page. Pages must load nothing from another host (the site works offline).
 */
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';

export interface SiteProblem {
  /** The page, relative to the output folder. */
  page: string;
  url: string;
  problem: string;
}

const attr = /<([a-z][a-z0-9-]*)\b[^>]*?\s(href|src)\s*=\s*(?:"([^"]*)"|'([^']*)')/gi;
const scheme = /^[a-z][a-z\d+.-]*:/i;

const decodeEntities = (s: string) =>
  s
    .replace(/&quot;/g, '"')
    .replace(/&#39;|&#x27;/g, "'")
    .replace(/&lt;/g, '<')
    .replace(/&gt;/g, '>')
    .replace(/&amp;/g, '&');

/** Every file under `dir`, as paths relative to it with `/`. */
export function filesUnder(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.isFile()) out.push(relative(dir, p).split('\\').join('/'));
    }
  };
  walk(dir);
  return out.sort();
}

/** The `href`/`src` values of a page, with the tag they are on. */
export function urlsOf(html: string): { tag: string; url: string }[] {
  // Code samples show markup as text, never as tags; scripts hold no links to check.
  const body = html.replace(/<script\b(?![^>]*\bsrc=)[^>]*>[\s\S]*?<\/script>/gi, '');
  return [...body.matchAll(attr)].map((m) => ({ tag: m[1]!.toLowerCase(), url: decodeEntities(m[3] ?? m[4] ?? '') }));
}

/** The `id`s of a page. */
export function idsOf(html: string): Set<string> {
  return new Set([...html.matchAll(/\sid\s*=\s*(?:"([^"]*)"|'([^']*)')/gi)].map((m) => decodeEntities(m[1] ?? m[2] ?? '')));
}

/**
 * Checks the built site in `outDir`, served at `base`. Links to other hosts are not followed, but
 * a page that loads a script, style sheet, font or image from one is reported.
 */
export function checkSite(outDir: string, base = '/'): { problems: SiteProblem[]; pages: number; links: number } {
  const problems: SiteProblem[] = [];
  let links = 0;
  const ids = new Map<string, Set<string>>();
  const idsIn = (file: string) => {
    let s = ids.get(file);
    if (!s) {
      s = idsOf(readFileSync(join(outDir, file), 'utf8'));
      ids.set(file, s);
    }
    return s;
  };
  const all = filesUnder(outDir);
  const pages = all.filter((f) => f.endsWith('.html'));
  for (const page of pages) {
    const html = readFileSync(join(outDir, page), 'utf8');
    for (const { tag, url } of urlsOf(html)) {
      const report = (problem: string) => problems.push({ page, url, problem });
      if (url === '' || url.startsWith('data:') || url.startsWith('mailto:') || url.startsWith('javascript:')) continue;
      if (scheme.test(url) || url.startsWith('//')) {
        if (tag !== 'a') report(`<${tag}> loads from another host`);
        continue;
      }
      const [, path = '', hash] = /^([^#?]*)(?:\?[^#]*)?(?:#(.*))?$/s.exec(url) ?? [];
      links++;
      let target: string;
      if (path === '') target = page;
      else {
        const resolved = new URL(path, `http://site${base}${page}`).pathname;
        if (!resolved.startsWith(base)) {
          report(`outside the site's base ${base}`);
          continue;
        }
        try {
          target = decodeURIComponent(resolved.slice(base.length));
        } catch {
          report('malformed percent-encoding');
          continue;
        }
        if (target === '' || target.endsWith('/')) target += 'index.html';
        const abs = join(outDir, target);
        if (existsSync(abs) && statSync(abs).isDirectory()) target += '/index.html';
        if (!existsSync(join(outDir, target))) {
          report(`no such file in the output: ${target}`);
          continue;
        }
      }
      if (hash && target.endsWith('.html')) {
        let id: string;
        try {
          id = decodeURIComponent(hash);
        } catch {
          report('malformed percent-encoding');
          continue;
        }
        if (!idsIn(target).has(id)) report(`no id '${id}' in ${target}`);
      }
    }
  }
  for (const css of all.filter((f) => f.endsWith('.css'))) {
    for (const m of readFileSync(join(outDir, css), 'utf8').matchAll(/(?:@import\s+|url\()\s*['"]?((?:https?:)?\/\/[^'")\s]+)/gi)) {
      problems.push({ page: css, url: m[1]!, problem: 'the style sheet loads from another host' });
    }
  }
  return { problems, pages: pages.length, links };
}

/** The problems as lines, `page: url — problem`. */
export function formatSiteProblems(problems: readonly SiteProblem[]): string {
  return problems.map((p) => `${p.page}: ${p.url} — ${p.problem}`).join('\n');
}
