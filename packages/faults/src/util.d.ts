/** Thrown by `withTimeout` when a promise does not settle in time (a hang). */
export declare class HangError extends Error {
    constructor(label: string, ms: number);
}
/**
 * How many times longer than on an idle machine a test's time limits are:
 * BLK_TEST_TIME_SCALE, which vitest.config.ts sets from the load average per
 * CPU at the start of the run (1 to 8), else 1. A hang detector must not fire
 * because other processes took the CPU.
 */
export declare function testTimeScale(): number;
/**
 * Settles like `promise`, or rejects with `HangError` after `ms` (times
 * `testTimeScale()`). The timer is always cleared, so a test that uses it
 * leaves nothing pending.
 */
export declare function withTimeout<T>(promise: Promise<T>, idleMs: number, label?: string): Promise<T>;
/** Runs `fn` and returns its error (undefined when it succeeded). */
export declare function caught(fn: () => Promise<unknown>): Promise<unknown>;
/**
 * Returns a function that yields to the event loop (setImmediate) when more
 * than `ms` have passed since it last did. Loops over in-memory storages only
 * ever wait on microtasks; without this, a minute-long loop starves timers
 * and I/O (vitest's worker RPC times out: "Timeout calling onTaskUpdate").
 */
export declare function yielder(ms?: number): () => Promise<void>;
