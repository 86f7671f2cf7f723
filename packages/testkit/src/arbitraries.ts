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
export function offsetArb({ size, alignments }: RangeConstraints): fc.Arbitrary<number> {
  const clamp = (v: number) => Math.max(0, Math.min(size - 1, v));
  const usable = alignments.filter((a) => a > 0 && a <= size);
  const arbs: Array<fc.WeightedArbitrary<number>> = [
    { arbitrary: fc.integer({ min: 0, max: size - 1 }), weight: 4 },
    { arbitrary: fc.constant(0), weight: 1 },
    { arbitrary: fc.integer({ min: Math.max(0, size - 2 * 4096), max: size - 1 }), weight: 1 },
  ];
  if (usable.length > 0) {
    arbs.push({
      arbitrary: fc
        .tuple(fc.constantFrom(...usable), fc.nat(), fc.integer({ min: -3, max: 3 }))
        .map(([a, k, d]) => clamp((k % (Math.floor(size / a) + 1)) * a + d)),
      weight: 4,
    });
  }
  return fc.oneof(...arbs);
}

/** Lengths: tiny, around an alignment (±3), up to a few sectors, up to maxLength, or "to the end". */
export function lengthArb({ maxLength, alignments }: RangeConstraints): fc.Arbitrary<number> {
  const usable = alignments.filter((a) => a > 0 && a <= maxLength);
  const arbs: Array<fc.WeightedArbitrary<number>> = [
    { arbitrary: fc.integer({ min: 1, max: 16 }), weight: 3 },
    { arbitrary: fc.integer({ min: 1, max: Math.min(maxLength, 3 * 4096) }), weight: 3 },
    { arbitrary: fc.integer({ min: 1, max: maxLength }), weight: 2 },
    { arbitrary: fc.constant(Number.MAX_SAFE_INTEGER), weight: 1 },
  ];
  if (usable.length > 0) {
    arbs.push({
      arbitrary: fc
        .tuple(fc.constantFrom(...usable), fc.integer({ min: 1, max: 2 }), fc.integer({ min: -3, max: 3 }))
        .map(([a, k, d]) => Math.max(1, a * k + d)),
      weight: 3,
    });
  }
  return fc.oneof(...arbs);
}

/** A range inside the image, clamped so that it never reaches past the end nor exceeds maxLength. */
export function rangeArb(c: RangeConstraints): fc.Arbitrary<ByteRange> {
  return fc.tuple(offsetArb(c), lengthArb(c)).map(([offset, length]) => ({
    offset,
    length: Math.max(1, Math.min(length, c.maxLength, c.size - offset)),
  }));
}

/** Pattern kind of a write: mostly random bytes, sometimes zeros or a constant. */
export function fillKindArb(): fc.Arbitrary<FillKind> {
  return fc.oneof(
    { arbitrary: fc.constant<FillKind>('random'), weight: 6 },
    { arbitrary: fc.constant<FillKind>('zero'), weight: 2 },
    { arbitrary: fc.constant<FillKind>('constant'), weight: 1 },
  );
}

export function seedArb(): fc.Arbitrary<number> {
  return fc.integer({ min: 0, max: 0x7fffffff });
}
