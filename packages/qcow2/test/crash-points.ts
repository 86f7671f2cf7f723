/**
 * Crash replay at chosen write points of a CrashSimVfs log, for the qcow2 tests that judge each
 * post-crash image with the real qemu-img: where the points are and how each state is judged stay
 * in the test.
 */
import type { MemoryVfs } from '@blk/core';
import { type CrashEvent, CrashReplay, type Rng, crashStates, isWritePoint } from '@blk/faults';

/** The indexes of `log`'s write points from `start` on. */
export function writePoints(log: readonly CrashEvent[], start: number): number[] {
  const points: number[] = [];
  for (let i = start; i < log.length; i++) if (isWritePoint(log[i]!)) points.push(i);
  return points;
}

/**
 * Replays `log` once and, after each of `points` (ascending), judges up to `perPoint` post-crash
 * states (crashStates with `rng`, files under /d) with `inspect`, whose message is a violation:
 * the violations as `after event N (label): message`, and how many states were judged.
 */
export async function crashAtPoints(
  log: readonly CrashEvent[],
  points: Iterable<number>,
  rng: Rng,
  perPoint: number,
  inspect: (crashed: MemoryVfs) => string | undefined | Promise<string | undefined>,
): Promise<{ states: number; violations: string[] }> {
  const replay = new CrashReplay(log);
  const result = { states: 0, violations: [] as string[] };
  for (const at of points) {
    replay.seek(at + 1);
    for (const state of crashStates(replay.model, rng, perPoint, '/d')) {
      result.states++;
      const message = await inspect(state.vfs);
      if (message) result.violations.push(`after event ${at} (${state.label}): ${message}`);
    }
  }
  return result;
}
