import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { checkLinks, formatProblems, markdownFiles } from './check-links.js';
import { checkSite, formatSiteProblems } from './check-site.js';
import { githubSlug, uniqueSlugs, vitepressSlug } from './slug.js';

const repoRoot = resolve(fileURLToPath(import.meta.url), '../../../..');
const temp: string[] = [];
const tempDir = () => {
  const dir = mkdtempSync(join(tmpdir(), 'spikeflow-docs-'));
  temp.push(dir);
  return dir;
};
afterAll(() => {
  for (const dir of temp) rmSync(dir, { recursive: true, force: true });
});

describe('heading ids', () => {
  it("are GitHub's, which the docs' links were written against", () => {
    expect(githubSlug("Where BPTT's time goes (`--profile`)".replace(/`/g, ''))).toBe('where-bptts-time-goes---profile');
    expect(githubSlug('Every rule on core’s window engine (revisions 3febd32 → de0ccbb, 2026-12-02)')).toBe(
      'every-rule-on-cores-window-engine-revisions-3febd32--de0ccbb-2026-12-02',
    );
    expect(githubSlug('TSSL-BP — @spikeflow/rule-tssl-bp, { "name": "tssl-bp" }')).toBe('tssl-bp--spikeflowrule-tssl-bp--name-tssl-bp-');
    expect(githubSlug('β vs τ: DEFAULT_FIXTURE_PLUGINS')).toBe('β-vs-τ-default_fixture_plugins');
    expect(uniqueSlugs(['Call Signature', 'Call Signature', 'Call Signature'])).toEqual(['call-signature', 'call-signature-1', 'call-signature-2']);
  });

  it("differ from VitePress's own, which the site therefore does not use on the hand-written pages", () => {
    expect(vitepressSlug("Where BPTT's time goes (--profile)")).toBe('where-bptt-s-time-goes-profile');
    expect(vitepressSlug('runWindow()')).toBe(githubSlug('runWindow()'));
  });
});

describe('the link check of the Markdown', () => {
  it('reports a missing file, folder or image, a missing anchor and a link out of the repository', async () => {
    const root = tempDir();
    mkdirSync(join(root, 'docs/data'), { recursive: true });
    writeFileSync(join(root, 'docs/data/x.json'), '{}');
    writeFileSync(join(root, 'docs/b.md'), '# B\n\n## The section\n\nText <a id="custom"></a>\n\n## The section\n');
    writeFileSync(
      join(root, 'docs/a.md'),
      [
        "# Page A\n\n## Where BPTT's time goes (`--profile`)\n",
        'Good: [b](b.md), [section](b.md#the-section), [second](b.md#the-section-1), [id](b.md#custom),',
        '[self](#where-bptts-time-goes---profile), [folder](data/), [file](data/x.json), [web](https://example.org/x.md),',
        '[readme](../README.md), ![image](data/x.json).\n',
        '```md\n[in a code block](nowhere.md)\n```\n',
        'Bad: [missing](c.md), [bad anchor](b.md#nope), [bad self](#nowhere), ![missing image](img/none.svg),',
        '[missing folder](results/), [outside](../../elsewhere.md), [anchor on a folder](data/#x), [ref][r].\n',
        '[r]: gone.md',
        '',
      ].join('\n'),
    );
    writeFileSync(join(root, 'README.md'), '# Root\n\nSee [the docs](docs/a.md#page-a) and [nothing](docs/a.md#page-b).\n');
    const problems = await checkLinks([join(root, 'docs/a.md'), join(root, 'docs/b.md'), join(root, 'README.md')], root);
    expect(problems.map((p) => `${p.file}:${p.line}: ${p.link}: ${p.problem}`)).toEqual([
      'docs/a.md:13: c.md: no such file: docs/c.md',
      "docs/a.md:13: b.md#nope: no heading or id 'nope' in docs/b.md",
      "docs/a.md:13: #nowhere: no heading or id 'nowhere' in docs/a.md",
      'docs/a.md:13: img/none.svg: no such file: docs/img/none.svg',
      'docs/a.md:13: results/: no such folder: docs/results',
      'docs/a.md:13: ../../elsewhere.md: points outside the repository',
      'docs/a.md:13: data/#x: an anchor on a folder',
      'docs/a.md:13: gone.md: no such file: docs/gone.md',
      "README.md:3: docs/a.md#page-b: no heading or id 'page-b' in docs/a.md",
    ]);
  });

  it('finds no broken link in docs/ and the README', async () => {
    const files = [...markdownFiles(join(repoRoot, 'docs'), [join(repoRoot, 'docs/api')]), join(repoRoot, 'README.md')];
    expect(files.length).toBeGreaterThan(15);
    const problems = await checkLinks(files, repoRoot);
    expect(formatProblems(problems)).toBe('');
  });
});

describe('the link check of the built site', () => {
  it('reports a missing page, a missing id and what a page loads from another host', () => {
    const out = tempDir();
    mkdirSync(join(out, 'guide/data'), { recursive: true });
    writeFileSync(join(out, 'guide/data/index.html'), '<h1 id="files">files</h1>');
    writeFileSync(join(out, 'style.css'), "@import url('https://fonts.example.org/x.css');");
    writeFileSync(
      join(out, 'index.html'),
      [
        '<link rel="stylesheet" href="/style.css"><h1 id="top">Top</h1>',
        '<a href="./guide/data/">ok</a> <a href="/guide/data/index.html#files">ok</a> <a href="#top">ok</a> <a href="https://example.org/">ok</a>',
        '<pre><code>&lt;a href="nowhere.html"&gt;</code></pre>',
        '<a href="./guide/page.html">missing</a> <a href="/guide/data/#nope">bad id</a> <img src="img/x.png">',
        '<script src="https://cdn.example.org/x.js"></script>',
      ].join('\n'),
    );
    const { problems, pages, links } = checkSite(out);
    expect(pages).toBe(2);
    expect(links).toBe(7);
    expect(formatSiteProblems(problems).split('\n')).toEqual([
      'index.html: ./guide/page.html — no such file in the output: guide/page.html',
      "index.html: /guide/data/#nope — no id 'nope' in guide/data/index.html",
      'index.html: img/x.png — no such file in the output: img/x.png',
      'index.html: https://cdn.example.org/x.js — <script> loads from another host',
      'style.css: https://fonts.example.org/x.css — the style sheet loads from another host',
    ]);
  });
});
