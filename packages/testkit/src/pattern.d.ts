/**
 * Deterministic byte patterns. Every byte the proofs write is derived from a
 * 32-bit seed that fast-check generated, so a failing run replays exactly
 * from fast-check's `{ seed, path }` and the counterexample stays short
 * (`write(4093, +7, random#1234)` instead of seven printed bytes).
 */
/** mulberry32: a tiny, fast 32-bit PRNG; plenty for test patterns. */
export declare function prng(seed: number): () => number;
/**
 * How the bytes of a write are chosen.
 * - `random`: pseudo-random bytes (the common case; any misplaced byte shows).
 * - `zero`: all zeros (drivers that detect or elide zero writes must still
 *   hide the layer below).
 * - `constant`: one repeated non-zero byte.
 */
export type FillKind = 'random' | 'zero' | 'constant';
/** Fills `into` with the pattern `kind` derived from `seed`. */
export declare function fillPattern(into: Uint8Array, seed: number, kind?: FillKind): Uint8Array;
/** A new buffer of `length` pattern bytes. */
export declare function pattern(length: number, seed: number, kind?: FillKind): Uint8Array;
