/**
 * Small dependency-free SVG line charts for run directories (loss and accuracy curves, bench
 * figures). Linear or log axes, several named series, a legend.
 */
export interface Series {
  readonly name: string;
  readonly points: readonly (readonly [number, number])[];
}

export interface PlotOptions {
  readonly title: string;
  readonly xLabel: string;
  readonly yLabel: string;
  readonly logX?: boolean;
  readonly logY?: boolean;
  readonly width?: number;
  readonly height?: number;
}

const COLORS = ['#1f77b4', '#d62728', '#2ca02c', '#ff7f0e', '#9467bd', '#8c564b', '#e377c2', '#17becf'];
const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

function niceTicks(lo: number, hi: number, count = 5): number[] {
  if (!(hi > lo)) return [lo];
  const raw = (hi - lo) / count;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= raw) ?? 10 * mag;
  const out: number[] = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) out.push(Number(v.toPrecision(12)));
  return out;
}

function fmt(v: number): string {
  if (v === 0) return '0';
  const a = Math.abs(v);
  return a >= 1e4 || a < 1e-3 ? v.toExponential(0) : String(Number(v.toPrecision(4)));
}

/** Renders series as an SVG document (a string). Non-finite points (and ≤ 0 on log axes) are skipped. */
export function lineChart(series: readonly Series[], o: PlotOptions): string {
  const W = o.width ?? 640;
  const H = o.height ?? 400;
  const m = { l: 70, r: 20, t: 40, b: 50 };
  const fx = (x: number) => (o.logX ? Math.log10(x) : x);
  const fy = (y: number) => (o.logY ? Math.log10(y) : y);
  const ok = (p: readonly [number, number]) => Number.isFinite(p[0]) && Number.isFinite(p[1]) && (!o.logX || p[0] > 0) && (!o.logY || p[1] > 0);
  const pts = series.flatMap((s) => s.points.filter(ok));
  const xs = pts.map((p) => fx(p[0]));
  const ys = pts.map((p) => fy(p[1]));
  let [x0, x1] = xs.length ? [Math.min(...xs), Math.max(...xs)] : [0, 1];
  let [y0, y1] = ys.length ? [Math.min(...ys), Math.max(...ys)] : [0, 1];
  if (x0 === x1) [x0, x1] = [x0 - 1, x1 + 1];
  if (y0 === y1) [y0, y1] = [y0 - 1, y1 + 1];
  const pad = (y1 - y0) * 0.05;
  y0 -= pad;
  y1 += pad;
  const px = (x: number) => m.l + ((fx(x) - x0) / (x1 - x0)) * (W - m.l - m.r);
  const py = (y: number) => H - m.b - ((fy(y) - y0) / (y1 - y0)) * (H - m.t - m.b);
  const ticks = (lo: number, hi: number, log?: boolean): number[] => {
    if (!log) return niceTicks(lo, hi);
    // lo and hi are log10 values: ticks at 1, 2, 5 × 10^k inside, or at decades only when many.
    const all: number[] = [];
    for (let e = Math.floor(lo); e <= Math.ceil(hi); e++) for (const m of [1, 2, 5]) all.push(m * 10 ** e);
    const inside = all.filter((v) => Math.log10(v) >= lo - 1e-9 && Math.log10(v) <= hi + 1e-9);
    return inside.length > 10 ? inside.filter((v) => Number.isInteger(Math.log10(v))) : inside;
  };
  const out: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12">`,
    `<rect width="${W}" height="${H}" fill="white"/>`,
    `<text x="${W / 2}" y="22" text-anchor="middle" font-size="15">${esc(o.title)}</text>`,
  ];
  for (const t of ticks(x0, x1, o.logX)) {
    const x = px(t);
    out.push(
      `<line x1="${x}" y1="${m.t}" x2="${x}" y2="${H - m.b}" stroke="#eee"/>`,
      `<text x="${x}" y="${H - m.b + 16}" text-anchor="middle">${fmt(t)}</text>`,
    );
  }
  for (const t of ticks(y0, y1, o.logY)) {
    const y = py(t);
    out.push(`<line x1="${m.l}" y1="${y}" x2="${W - m.r}" y2="${y}" stroke="#eee"/>`, `<text x="${m.l - 6}" y="${y + 4}" text-anchor="end">${fmt(t)}</text>`);
  }
  out.push(
    `<rect x="${m.l}" y="${m.t}" width="${W - m.l - m.r}" height="${H - m.t - m.b}" fill="none" stroke="#333"/>`,
    `<text x="${(W + m.l - m.r) / 2}" y="${H - 12}" text-anchor="middle">${esc(o.xLabel)}${o.logX ? ' (log)' : ''}</text>`,
    `<text transform="translate(16 ${(H + m.t - m.b) / 2}) rotate(-90)" text-anchor="middle">${esc(o.yLabel)}${o.logY ? ' (log)' : ''}</text>`,
  );
  series.forEach((s, i) => {
    const c = COLORS[i % COLORS.length]!;
    const p = s.points.filter(ok);
    if (p.length > 1)
      out.push(`<polyline fill="none" stroke="${c}" stroke-width="1.8" points="${p.map(([x, y]) => `${px(x).toFixed(1)},${py(y).toFixed(1)}`).join(' ')}"/>`);
    for (const [x, y] of p.length <= 40 ? p : []) out.push(`<circle cx="${px(x).toFixed(1)}" cy="${py(y).toFixed(1)}" r="2.5" fill="${c}"/>`);
    out.push(
      `<rect x="${W - m.r - 150}" y="${m.t + 8 + i * 18}" width="12" height="3" fill="${c}"/>`,
      `<text x="${W - m.r - 132}" y="${m.t + 13 + i * 18}">${esc(s.name)}</text>`,
    );
  });
  out.push('</svg>');
  return out.join('\n');
}

/** Renders an SVG to PNG with @resvg/resvg-js when it is installed (an optional dependency); null otherwise. */
export async function svgToPng(svg: string): Promise<Uint8Array | null> {
  try {
    const { Resvg } = (await import('@resvg/resvg-js')) as typeof import('@resvg/resvg-js');
    return new Resvg(svg, { font: { loadSystemFonts: true, defaultFontFamily: 'DejaVu Sans' } }).render().asPng();
  } catch {
    return null;
  }
}
