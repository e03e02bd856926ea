import { describe, expect, it } from 'vitest';
import { lineChart, svgToPng } from './index.js';

describe('lineChart', () => {
  it('draws one polyline and one legend entry per series, escaping text', () => {
    const svg = lineChart(
      [
        {
          name: 'bptt',
          points: [
            [100, 1e6],
            [250, 2.5e6],
            [500, 5e6],
          ],
        },
        {
          name: 'tbptt <k=50>',
          points: [
            [100, 1e5],
            [250, 1e5],
            [500, 1e5],
          ],
        },
      ],
      { title: 'memory & T', xLabel: 'T', yLabel: 'bytes', logX: true, logY: true },
    );
    expect(svg.startsWith('<svg xmlns="http://www.w3.org/2000/svg"')).toBe(true);
    expect(svg.match(/<polyline/g)!.length).toBe(2);
    expect(svg).toContain('tbptt &lt;k=50&gt;');
    expect(svg).toContain('memory &amp; T');
    expect(svg).toContain('(log)');
    const ys = [...svg.matchAll(/<polyline[^>]*points="([^"]+)"/g)].map((m) => m[1]!.split(' ').map((p) => Number(p.split(',')[1])));
    // The flat series is flat, and the growing one rises (SVG y grows downwards).
    expect(new Set(ys[1]).size).toBe(1);
    expect(ys[0]![0]!).toBeGreaterThan(ys[0]![2]!);
  });

  it('skips non-finite points and non-positive ones on log axes', () => {
    const svg = lineChart(
      [
        {
          name: 'a',
          points: [
            [1, NaN],
            [2, 0],
            [3, 5],
            [4, 6],
          ],
        },
      ],
      { title: 't', xLabel: 'x', yLabel: 'y', logY: true },
    );
    const pts = /<polyline[^>]*points="([^"]+)"/.exec(svg)![1]!.split(' ');
    expect(pts.length).toBe(2);
  });

  it('renders to PNG when @resvg/resvg-js is installed, or says it cannot (null)', async () => {
    const png = await svgToPng(
      lineChart(
        [
          {
            name: 'a',
            points: [
              [0, 0],
              [1, 1],
            ],
          },
        ],
        { title: 't', xLabel: 'x', yLabel: 'y' },
      ),
    );
    if (png) expect(Array.from(png.subarray(1, 4))).toEqual([0x50, 0x4e, 0x47]);
    else expect(png).toBeNull();
  });
});
