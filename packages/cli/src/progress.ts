/**
 * qemu-img's progress line, `    (45.00/100%)` redrawn with a carriage
 * return, on stdout. Shown only when -p was given AND stdout is a terminal:
 * in pipes and files a long job stays quiet.
 */
import { cFixed } from './format.js';
import type { ProgressEvent } from './jobs/common.js';

export interface Progress {
  /** Reports `done` out of `total` units. */
  update(done: number): void;
  /** Draws 100% and ends the line (only if anything was drawn). */
  done(): void;
}

const QUIET: Progress = { update() {}, done() {} };

export function createProgress(enabled: boolean, total: number, stream: NodeJS.WriteStream = process.stdout): Progress {
  if (!enabled || !stream.isTTY) return QUIET;
  let lastText = '';
  let lastTime = 0;
  let drawn = false;
  const draw = (percent: number, force: boolean) => {
    const text = `    (${cFixed(percent, 2)}/100%)`;
    const now = Date.now();
    if (!force && (text === lastText || now - lastTime < 100)) return;
    lastText = text;
    lastTime = now;
    drawn = true;
    stream.write(`${text}\r`);
  };
  draw(0, true);
  return {
    update(doneUnits: number) {
      const percent = total > 0 ? Math.min(100, (doneUnits / total) * 100) : 100;
      draw(percent, false);
    },
    done() {
      if (!drawn) return;
      draw(100, true);
      stream.write('\n');
    },
  };
}

/**
 * A job's `onProgress` callback that draws the line: the bar is created when
 * the copy starts (drawing 0%), updated as it goes and finished at the end.
 */
export function progressListener(enabled: boolean): (event: ProgressEvent) => void {
  let bar: Progress | undefined;
  return (event) => {
    if (event.phase === 'start') bar = createProgress(enabled, event.total);
    else if (event.phase === 'update') bar?.update(event.done);
    else bar?.done();
  };
}
