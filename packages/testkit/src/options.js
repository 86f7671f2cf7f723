import { assert } from 'fast-check';
/** The environment's `BLK_PROPERTY_RUNS`, read without assuming Node. */
export function envRuns() {
    const env = globalThis.process?.env;
    const raw = env?.BLK_PROPERTY_RUNS;
    if (raw === undefined || raw.trim() === '')
        return undefined;
    const n = Number(raw);
    if (!Number.isSafeInteger(n) || n < 1)
        throw new Error(`BLK_PROPERTY_RUNS must be a positive integer, not '${raw}'`);
    return n;
}
export function fcParameters(options) {
    const params = { numRuns: envRuns() ?? options.numRuns ?? 200 };
    if (options.seed !== undefined)
        params.seed = options.seed;
    if (options.path !== undefined)
        params.path = options.path;
    return { ...params, ...options.fcParameters };
}
/**
 * Runs `fc.assert` and, on failure, rethrows one Error whose message leads
 * with the subject and the violated expectation, followed by fast-check's
 * report (counterexample, seed, replay path); the original is its `cause`.
 */
export async function assertProperty(what, property, params) {
    try {
        await assert(property, params);
    }
    catch (err) {
        const cause = err instanceof Error && err.cause instanceof Error ? err.cause : undefined;
        const report = err instanceof Error ? err.message : String(err);
        throw new Error(`${what}: ${cause ? cause.message : 'property failed'}\n\n${report}`, { cause: cause ?? err });
    }
}
