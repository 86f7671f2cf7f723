import type { Rng } from './rng.js';
/** A fixed-width integer field of a header, for field-aware mutation. */
export interface FieldSpec {
    name?: string;
    offset: number;
    size: 1 | 2 | 4 | 8;
    endian: 'be' | 'le';
}
export interface MutateOptions {
    /** Integer fields to set to boundary values. */
    fields?: readonly FieldSpec[];
    /** Where a path field starts and how long it is, for path mutations. */
    pathField?: {
        offset: number;
        length: number;
    };
    /** Upper bound of the output length (default 64 KiB + input length). */
    maxLength?: number;
}
/**
 * A deterministic mutator (AFL-style havoc, plus header-aware moves): bit
 * flips, random bytes, interesting integers written into known header
 * fields, truncations, extensions, odd backing paths, block copies. The
 * input is not changed; the output depends only on `rng`'s state.
 */
export declare function mutate(rng: Rng, input: Uint8Array, options?: MutateOptions): Uint8Array;
export declare function writeField(data: Uint8Array, field: FieldSpec, value: bigint): void;
