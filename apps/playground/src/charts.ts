// Canvas drawings of the playground: line charts of a run's curves, a spike raster, membrane traces
// and firing rates. Plain 2D canvas, sized to the element's CSS box and the screen's pixel ratio.

const INK = '#1f2937';
const GRID = '#e5e7eb';
const COLOURS = ['#2563eb', '#dc2626', '#059669', '#d97706', '#7c3aed', '#0891b2'];

function surface(canvas: HTMLCanvasElement): { g: CanvasRenderingContext2D; w: number; h: number } {
  const ratio = window.devicePixelRatio || 1;
  const w = canvas.clientWidth || canvas.width;
  const h = canvas.clientHeight || canvas.height;
  if (canvas.width !== Math.round(w * ratio)) canvas.width = Math.round(w * ratio);
  if (canvas.height !== Math.round(h * ratio)) canvas.height = Math.round(h * ratio);
  const g = canvas.getContext('2d')!;
  g.setTransform(ratio, 0, 0, ratio, 0, 0);
  g.clearRect(0, 0, w, h);
  g.font = '11px system-ui, sans-serif';
  return { g, w, h };
}

export interface Series {
  readonly label: string;
  /** Points (x, y); y may be NaN for a gap. */
  readonly points: readonly (readonly [number, number])[];
}

/** Line chart of `series` with a title, axes from the data's range (`yMin`/`yMax` fix them). */
export function lineChart(canvas: HTMLCanvasElement, title: string, series: readonly Series[], { yMin, yMax }: { yMin?: number; yMax?: number } = {}): void {
  const { g, w, h } = surface(canvas);
  const pad = { l: 44, r: 10, t: 18, b: 20 };
  const all = series.flatMap((s) => s.points).filter(([, y]) => Number.isFinite(y));
  g.fillStyle = INK;
  g.fillText(title, pad.l, 12);
  if (all.length === 0) return;
  const x0 = Math.min(...all.map((p) => p[0]));
  const x1 = Math.max(x0 + 1, ...all.map((p) => p[0]));
  let y0 = yMin ?? Math.min(...all.map((p) => p[1]));
  let y1 = yMax ?? Math.max(...all.map((p) => p[1]));
  if (y1 - y0 < 1e-9) [y0, y1] = [y0 - 0.5, y1 + 0.5];
  const X = (x: number) => pad.l + ((x - x0) / (x1 - x0)) * (w - pad.l - pad.r);
  const Y = (y: number) => h - pad.b - ((y - y0) / (y1 - y0)) * (h - pad.t - pad.b);
  g.strokeStyle = GRID;
  g.lineWidth = 1;
  for (let i = 0; i <= 4; i++) {
    const y = y0 + ((y1 - y0) * i) / 4;
    g.beginPath();
    g.moveTo(pad.l, Y(y));
    g.lineTo(w - pad.r, Y(y));
    g.stroke();
    g.fillText(Math.abs(y) >= 100 ? y.toFixed(0) : y.toPrecision(2), 2, Y(y) + 4);
  }
  g.fillText(String(x0), pad.l, h - 6);
  g.fillText(String(x1), w - pad.r - g.measureText(String(x1)).width, h - 6);
  series.forEach((s, i) => {
    g.strokeStyle = COLOURS[i % COLOURS.length]!;
    g.lineWidth = 1.5;
    g.beginPath();
    let pen = false;
    for (const [x, y] of s.points) {
      if (!Number.isFinite(y)) {
        pen = false;
        continue;
      }
      if (pen) g.lineTo(X(x), Y(y));
      else g.moveTo(X(x), Y(y));
      pen = true;
    }
    g.stroke();
    g.fillStyle = g.strokeStyle;
    g.fillText(s.label, w - pad.r - (series.length - i) * 42, 12);
  });
}

/**
 * Spike raster of one sample: `spikes` holds T·N values (step-major); a dot per spike, time along
 * x, neuron along y. Returns how many spikes it drew.
 */
export function raster(canvas: HTMLCanvasElement, title: string, spikes: Float32Array, T: number, N: number): number {
  const { g, w, h } = surface(canvas);
  const pad = { l: 44, r: 10, t: 18, b: 20 };
  g.fillStyle = INK;
  g.fillText(title, pad.l, 12);
  g.fillText('t →', w - pad.r - 20, h - 6);
  g.fillText('neuron', 2, pad.t + 10);
  const cw = (w - pad.l - pad.r) / T;
  const ch = (h - pad.t - pad.b) / N;
  let drawn = 0;
  for (let t = 0; t < T; t++) {
    for (let n = 0; n < N; n++) {
      if (spikes[t * N + n]! > 0) {
        g.fillRect(pad.l + t * cw, pad.t + n * ch, Math.max(1, cw - 0.5), Math.max(1, ch - 0.5));
        drawn++;
      }
    }
  }
  g.strokeStyle = GRID;
  g.strokeRect(pad.l, pad.t, w - pad.l - pad.r, h - pad.t - pad.b);
  return drawn;
}

/** Firing rate of each neuron (spikes per step) as bars. */
export function rates(canvas: HTMLCanvasElement, title: string, perNeuron: Float32Array): void {
  const { g, w, h } = surface(canvas);
  const pad = { l: 44, r: 10, t: 18, b: 20 };
  const top = Math.max(0.05, ...perNeuron);
  g.fillStyle = INK;
  g.fillText(`${title} (max ${top.toFixed(2)})`, pad.l, 12);
  const bw = (w - pad.l - pad.r) / perNeuron.length;
  g.fillStyle = COLOURS[0]!;
  perNeuron.forEach((r, i) => {
    const bh = (r / top) * (h - pad.t - pad.b);
    g.fillRect(pad.l + i * bw, h - pad.b - bh, Math.max(1, bw - 1), bh);
  });
  g.fillStyle = INK;
  g.fillText('0', 30, h - pad.b);
  g.fillText(top.toFixed(2), 2, pad.t + 8);
}
