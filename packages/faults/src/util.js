/** Thrown by `withTimeout` when a promise does not settle in time (a hang). */
export class HangError extends Error {
    constructor(label, ms) {
        super(`${label}: did not settle within ${ms} ms`);
        this.name = 'HangError';
    }
}
/**
 * How many times longer than on an idle machine a test's time limits are:
 * BLK_TEST_TIME_SCALE, which vitest.config.ts sets from the load average per
 * CPU at the start of the run (1 to 8), else 1. A hang detector must not fire
 * because other processes took the CPU.
 */
export function testTimeScale() {
    const env = globalThis.process?.env;
    const scale = Number(env?.BLK_TEST_TIME_SCALE);
    return Number.isFinite(scale) && scale >= 1 ? scale : 1;
}
/**
 * Settles like `promise`, or rejects with `HangError` after `ms` (times
 * `testTimeScale()`). The timer is always cleared, so a test that uses it
 * leaves nothing pending.
 */
export async function withTimeout(promise, idleMs, label = 'operation') {
    const ms = Math.round(idleMs * testTimeScale());
    let timer;
    const timeout = new Promise((_, reject) => {
        timer = setTimeout(() => reject(new HangError(label, ms)), ms);
    });
    try {
        return await Promise.race([promise, timeout]);
    }
    finally {
        clearTimeout(timer);
    }
}
/** Runs `fn` and returns its error (undefined when it succeeded). */
export async function caught(fn) {
    try {
        await fn();
        return undefined;
    }
    catch (err) {
        return err;
    }
}
/**
 * Returns a function that yields to the event loop (setImmediate) when more
 * than `ms` have passed since it last did. Loops over in-memory storages only
 * ever wait on microtasks; without this, a minute-long loop starves timers
 * and I/O (vitest's worker RPC times out: "Timeout calling onTaskUpdate").
 */
export function yielder(ms = 50) {
    let last = Date.now();
    return async () => {
        const now = Date.now();
        if (now - last < ms)
            return;
        last = now;
        await new Promise((resolve) => setImmediate(resolve));
    };
}
