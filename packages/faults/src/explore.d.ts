import type { MemoryVfs } from '@blk/core';
import { type CrashEvent, type CrashState } from './crash.js';
import type { Rng } from './rng.js';
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
export declare function exploreCrashes(options: ExploreOptions): Promise<ExploreResult>;
