/**
 * Deterministic byte patterns. Every byte the proofs write is derived from a
 * 32-bit seed that fast-check generated, so a failing run replays exactly
 * from fast-check's `{ seed, path }` and the counterexample stays short
 * (`write(4093, +7, random#1234)` instead of seven printed bytes).
 */
/** mulberry32: a tiny, fast 32-bit PRNG; plenty for test patterns. */
export function prng(seed) {
    let a = seed >>> 0;
    return () => {
        a = (a + 0x6d2b79f5) >>> 0;
        let t = a;
        t = Math.imul(t ^ (t >>> 15), t | 1);
        t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
        return (t ^ (t >>> 14)) >>> 0;
    };
}
/** Fills `into` with the pattern `kind` derived from `seed`. */
export function fillPattern(into, seed, kind = 'random') {
    if (kind === 'zero') {
        into.fill(0);
    }
    else if (kind === 'constant') {
        into.fill(((seed >>> 0) % 255) + 1);
    }
    else {
        const next = prng(seed);
        const whole = into.length - (into.length % 4);
        let i = 0;
        for (; i < whole; i += 4) {
            const v = next();
            into[i] = v & 0xff;
            into[i + 1] = (v >>> 8) & 0xff;
            into[i + 2] = (v >>> 16) & 0xff;
            into[i + 3] = v >>> 24;
        }
        if (i < into.length) {
            const v = next();
            for (let shift = 0; i < into.length; i++, shift += 8)
                into[i] = (v >>> shift) & 0xff;
        }
    }
    return into;
}
/** A new buffer of `length` pattern bytes. */
export function pattern(length, seed, kind = 'random') {
    return fillPattern(new Uint8Array(length), seed, kind);
}
