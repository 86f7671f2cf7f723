/**
 * A small, fast, seeded pseudo-random generator (xoshiro128**, seeded by
 * splitmix32), so that every crash state, fault schedule and fuzz input can be
 * reproduced from one number. Not for cryptography.
 */
export declare class Rng {
    private a;
    private b;
    private c;
    private d;
    readonly seed: number;
    constructor(seed?: number | string);
    /** A uniformly distributed unsigned 32-bit integer. */
    u32(): number;
    /** A float in [0, 1). */
    float(): number;
    /** An integer in [0, n) (n ≤ 2^32). */
    int(n: number): number;
    /** An integer in [lo, hi] (inclusive). */
    range(lo: number, hi: number): number;
    bool(p?: number): boolean;
    pick<T>(items: readonly T[]): T;
    bytes(n: number): Uint8Array;
    fill(into: Uint8Array): void;
    /** A new generator derived from this one (independent stream for a sub-task). */
    fork(): Rng;
    shuffle<T>(items: T[]): T[];
}
/** FNV-1a over the UTF-16 code units of a string: turns a test name into a seed. */
export declare function hashString(text: string): number;
/** Reads an integer environment variable (e.g. BLK_CRASH_STATES) with a default. */
export declare function envInt(name: string, fallback: number): number;
