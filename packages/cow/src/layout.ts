/**
 * Where the bitmap and the data area lie (spec §5), per variant formula.
 *
 * The three formulas are kept exactly as their writers computed them, bugs
 * included (the v1/v2 bitmap length rounds down), because a reader must find
 * the bytes where the writer put them.
 */
import { BlockError, isPowerOfTwo } from '@blk/core/portable';
import { VARIANTS, type CowVariant } from './variants.js';

export interface CowLayout {
  headerSize: number;
  bitmapOffset: number;
  /** Bytes of bitmap this variant owns; never write beyond. */
  bitmapLength: number;
  dataOffset: number;
  /** Virtual sectors (512 bytes each). */
  sectors: number;
  /**
   * Sectors that have a bit inside `bitmapLength`. Smaller than `sectors`
   * only for v1/v2-uml images whose sector count is not a multiple of 8
   * (the rounding bug): the sectors past it always read from the backing file.
   */
  trackedSectors: number;
}

export interface LayoutInput {
  variant: CowVariant;
  size: number;
  sectorSize: number;
  /** v3 / v3-broken only. */
  alignment?: number;
}

// Exact for the operands used here: b is a power of two and a a safe integer,
// so a / b is an exact float and Math.floor/ceil lose nothing.
const ceilDiv = (a: number, b: number): number => Math.ceil(a / b);
const floorDiv = (a: number, b: number): number => Math.floor(a / b);
const roundUp = (a: number, b: number): number => ceilDiv(a, b) * b;

/**
 * Computes the layout. Preconditions (checked, `invalid-argument` otherwise):
 * `size` a non-negative safe integer, `sectorSize` and, for v3, `alignment`
 * powers of two up to 1 GiB. Validation of header values against what UML
 * accepts is `validateHeader`'s job; this function only does arithmetic.
 */
export function computeLayout(input: LayoutInput): CowLayout {
  const spec = VARIANTS[input.variant];
  const { size, sectorSize: ss } = input;
  if (!Number.isSafeInteger(size) || size < 0) {
    throw new BlockError('invalid-argument', `size ${size} is not a non-negative integer below 2^53`, {
      field: 'size',
    });
  }
  if (!isPowerOfTwo(ss))
    throw new BlockError('invalid-argument', `sector size ${ss} is not a power of two`, { field: 'sectorsize' });
  const H = spec.headerSize;
  const sectors = ceilDiv(size, ss);
  let bitmapOffset: number;
  let bitmapLength: number;
  let dataOffset: number;
  switch (spec.formula) {
    case 'uml-legacy':
      // floor((S + ss - 1) / (8 ss)) written without the overflowing sum: floor(ceil(S/ss) / 8).
      bitmapOffset = H;
      bitmapLength = floorDiv(sectors, 8);
      dataOffset = roundUp(H + bitmapLength, ss);
      break;
    case 'uml-v3': {
      const al = input.alignment;
      if (al === undefined || !isPowerOfTwo(al)) {
        throw new BlockError('invalid-argument', `alignment ${al} is not a power of two up to 1 GiB`, {
          field: 'alignment',
        });
      }
      bitmapOffset = roundUp(H, al);
      bitmapLength = ceilDiv(sectors, 8);
      dataOffset = roundUp(bitmapOffset + bitmapLength, al);
      break;
    }
    case 'qemu':
      // QEMU counts whole 512-byte sectors of the size (floor) and always aligns data to 512.
      bitmapOffset = H;
      bitmapLength = ceilDiv(floorDiv(size, 512), 8);
      dataOffset = roundUp(H + bitmapLength, 512);
      break;
  }
  const layoutSectors = spec.formula === 'qemu' ? floorDiv(size, 512) : sectors;
  return {
    headerSize: H,
    bitmapOffset,
    bitmapLength,
    dataOffset,
    sectors: layoutSectors,
    trackedSectors: Math.min(layoutSectors, bitmapLength * 8),
  };
}
