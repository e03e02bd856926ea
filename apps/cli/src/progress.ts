import cliProgress from 'cli-progress';
import type { TrainerEvent } from '@spikeflow/core';

const pct = (x?: number) => (x === undefined ? '   -  ' : `${(x * 100).toFixed(1).padStart(5)}%`);
const secs = (ms: number) =>
  ms >= 60_000 ? `${Math.floor(ms / 60_000)}m${String(Math.round((ms % 60_000) / 1000)).padStart(2, '0')}s` : `${(ms / 1000).toFixed(1)}s`;

/**
 * Shows training progress: a live bar on a terminal (epoch, batch, loss, accuracy, samples/s,
 * ETA), plain lines otherwise (CI logs, pipes) — one per epoch and a few per epoch in between.
 */
export function progressReporter(out: NodeJS.WriteStream = process.stderr): { listener: (e: TrainerEvent) => void; stop: () => void } {
  const tty = Boolean(out.isTTY) && !process.env['CI'];
  let bar: cliProgress.SingleBar | undefined;
  let epochs = 0;
  let perEpoch = 0;
  let lossEma: number | undefined;
  let lastLine = 0;
  const line = (s: string) => {
    if (bar) bar.stop();
    out.write(`${s}\n`);
    bar = undefined;
  };
  const listener = (e: TrainerEvent) => {
    switch (e.type) {
      case 'start':
        epochs = e.epochs;
        perEpoch = e.batchesPerEpoch;
        line(
          `${e.resumed ? 'resuming at' : 'training from'} epoch ${e.position.epoch + 1}/${epochs}, batch ${e.position.batch}/${perEpoch} (step ${e.position.step})`,
        );
        break;
      case 'batch': {
        lossEma = lossEma === undefined ? e.loss : 0.9 * lossEma + 0.1 * e.loss;
        const { epoch, batch } = e.position;
        const eta = ((perEpoch - batch) / Math.max(batch, 1)) * e.elapsedMs;
        const payload = { ep: `${epoch + 1}/${epochs}`, loss: lossEma.toFixed(4), acc: pct(e.accuracy), sps: e.samplesPerSec.toFixed(0), eta: secs(eta) };
        if (tty) {
          if (!bar) {
            bar = new cliProgress.SingleBar(
              {
                format: `epoch {ep} |{bar}| {value}/{total} | loss {loss}${e.accuracy !== undefined ? ' | acc {acc}' : ''} | {sps} samples/s | ETA {eta}`,
                hideCursor: true,
                clearOnComplete: true,
                stream: out,
              },
              cliProgress.Presets.shades_classic,
            );
            bar.start(perEpoch, batch, payload);
          } else bar.update(batch, payload);
        } else if (batch === perEpoch || performance.now() - lastLine > 10_000) {
          lastLine = performance.now();
          out.write(
            `epoch ${payload.ep} batch ${batch}/${perEpoch} loss ${payload.loss}${e.accuracy !== undefined ? ` acc ${payload.acc.trim()}` : ''} ${payload.sps} samples/s\n`,
          );
        }
        break;
      }
      case 'epoch':
        line(
          `epoch ${e.epoch + 1}/${epochs}: train loss ${e.loss.toFixed(4)}${e.accuracy !== undefined ? `, accuracy ${pct(e.accuracy).trim()}` : ''}, ${secs(e.elapsedMs)}`,
        );
        break;
      case 'eval':
        line(
          `  eval (${e.result.split}): loss ${e.result.loss.toFixed(4)}${e.result.accuracy !== undefined ? `, accuracy ${pct(e.result.accuracy).trim()}` : ''} over ${e.result.samples} samples`,
        );
        break;
      case 'end':
        line(`done in ${secs(e.elapsedMs)}`);
        break;
      default:
        break;
    }
  };
  return { listener, stop: () => bar?.stop() };
}
