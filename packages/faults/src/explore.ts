import type { MemoryVfs } from '@blk/core';
import { CrashReplay, crashStates, isWritePoint, type CrashEvent, type CrashState } from './crash.js';
import type { Rng } from './rng.js';
import { yielder } from './util.js';

export interface ExploreOptions {
  /** A log recorded by `CrashSimVfs`. */
  log: readonly CrashEvent[];
  /** Index of the first event after which to crash (events before it are only replayed; default 0). */
  from?: number;
  /** States to check at each write point (default 16). */
  statesPerPoint?: number;
  /** Stop after this many states in all (default: no limit). */
  maxStates?: number;
  rng: Rng;
  cwd?: string;
  /** Called for every `mark` event, in log order (to advance the test's oracle). */
  onMark?: (label: string, data: unknown, index: number) => void;
  /**
   * Checks one post-crash state; throws (or returns a message) on a violation.
   * `point` is the index of the last event applied before the crash.
   */
  check: (vfs: MemoryVfs, state: CrashState, point: number) => Promise<string | void>;
  /** Stop at the first violation (default true). */
  stopOnFailure?: boolean;
}

export interface CrashViolation {
  point: number;
  event: CrashEvent | undefined;
  label: string;
  kept: string;
  message: string;
}

export interface ExploreResult {
  /** Write points crashed at. */
  points: number;
  /** Post-crash states checked. */
  states: number;
  /** States by label ('kill', 'none', 'subset', ...). */
  byLabel: Record<string, number>;
  violations: CrashViolation[];
}

/**
 * Crashes after every write point of a recorded log: replays the log event
 * by event and, after each write, truncate or flush, checks up to
 * `statesPerPoint` post-crash states (the kill state, the durable state and
 * chosen subsets of the volatile sectors). Also crashes once before the first
 * write point (at `from`).
 */
export async function exploreCrashes(options: ExploreOptions): Promise<ExploreResult> {
  const replay = new CrashReplay(options.log);
  const from = options.from ?? 0;
  const per = options.statesPerPoint ?? 16;
  const stop = options.stopOnFailure ?? true;
  const result: ExploreResult = { points: 0, states: 0, byLabel: {}, violations: [] };
  const breathe = yielder();
  const runPoint = async (): Promise<boolean> => {
    result.points++;
    const point = replay.position - 1;
    for (const state of crashStates(replay.model, options.rng, per, options.cwd)) {
      if (options.maxStates !== undefined && result.states >= options.maxStates) return false;
      result.states++;
      await breathe();
      result.byLabel[state.label] = (result.byLabel[state.label] ?? 0) + 1;
      let message: string | void;
      try {
        message = await options.check(state.vfs, state, point);
      } catch (err) {
        message = err instanceof Error ? `${err.name}: ${err.message}` : String(err);
      }
      if (message) {
        result.violations.push({
          point,
          event: options.log[point],
          label: state.label,
          kept: state.kept.map((k) => (k ? '1' : '0')).join(''),
          message,
        });
        if (stop) return false;
      }
    }
    return true;
  };
  for (;;) {
    const index = replay.position;
    const event = replay.step();
    if (!event) break;
    if (event.type === 'mark') options.onMark?.(event.label, event.data, index);
    if (index < from) continue;
    if (!isWritePoint(event)) continue;
    if (!(await runPoint())) break;
  }
  return result;
}
