import fc from 'fast-check';
import type { FillKind } from './pattern.js';
export interface RangeConstraints {
    /** Image size in bytes (> 0). */
    size: number;
    /** Longest range. */
    maxLength: number;
    /** Boundaries offsets and lengths cluster around. */
    alignments: readonly number[];
}
/** A byte range inside the image: `offset + length <= size`, `length >= 1`. */
export interface ByteRange {
    offset: number;
    length: number;
}
/**
 * Offsets: uniformly anywhere, near a multiple of an alignment (±3 bytes:
 * the unaligned head/tail cases), 0, or in the last few sectors.
 */
export declare function offsetArb({ size, alignments }: RangeConstraints): fc.Arbitrary<number>;
/** Lengths: tiny, around an alignment (±3), up to a few sectors, up to maxLength, or "to the end". */
export declare function lengthArb({ maxLength, alignments }: RangeConstraints): fc.Arbitrary<number>;
/** A range inside the image, clamped so that it never reaches past the end nor exceeds maxLength. */
export declare function rangeArb(c: RangeConstraints): fc.Arbitrary<ByteRange>;
/** Pattern kind of a write: mostly random bytes, sometimes zeros or a constant. */
export declare function fillKindArb(): fc.Arbitrary<FillKind>;
export declare function seedArb(): fc.Arbitrary<number>;
