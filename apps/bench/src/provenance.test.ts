import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

/**
 * Figures in the docs come from committed revisions: every benchmark JSON kept under docs/ (the
 * bench's reports, tools/peers/compare.mjs's comparisons) names the revision it was measured at,
 * and none was measured in a working tree with uncommitted changes (`<sha>+dirty`).
 */
const docs = fileURLToPath(new URL('../../../docs/', import.meta.url));

function jsonFiles(dir: string, out: string[] = []): string[] {
  for (const name of readdirSync(dir)) {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) jsonFiles(path, out);
    else if (name.endsWith('.json')) out.push(path);
  }
  return out;
}

describe('docs provenance', () => {
  it('every benchmark JSON under docs/ names a committed revision', () => {
    const reports = jsonFiles(docs)
      .map((path) => ({ path: relative(docs, path), data: JSON.parse(readFileSync(path, 'utf8')) as Record<string, unknown> }))
      .filter(({ data }) => 'revision' in data);
    expect(reports.length).toBeGreaterThan(10);
    const bad = reports
      .filter(({ data }) => typeof data['revision'] !== 'string' || !/^[0-9a-f]{40}$/.test(data['revision']))
      .map(({ path, data }) => `${path}: ${String(data['revision'])}`);
    expect(bad, 'measured in an uncommitted tree (or without a revision): measure again at a commit').toEqual([]);
  });
});
