import { BlockError } from './errors.js';

/** Largest byte offset or size blk handles: offsets are JS numbers, exact up to 2^53 - 1. */
export const MAX_OFFSET = Number.MAX_SAFE_INTEGER;

/** Throws `out-of-range` unless `value` is a non-negative safe integer. */
export function checkOffset(value: number, what: string, path?: string): void {
  if (!Number.isSafeInteger(value) || value < 0) {
    throw new BlockError('out-of-range', `${what} ${value} is not a non-negative integer below 2^53`, { path });
  }
}

/** Throws `out-of-range` unless [offset, offset+length) lies inside [0, size). */
export function checkRange(offset: number, length: number, size: number, path?: string): void {
  checkOffset(offset, 'offset', path);
  checkOffset(length, 'length', path);
  if (offset + length > size) {
    throw new BlockError(
      'out-of-range',
      `request [${offset}, ${offset + length}) reaches past the end of the image (${size} bytes)`,
      { path, offset },
    );
  }
}

export function alignDown(value: number, alignment: number): number {
  return value - (value % alignment);
}

export function alignUp(value: number, alignment: number): number {
  const rest = value % alignment;
  return rest === 0 ? value : value + (alignment - rest);
}

export function isPowerOfTwo(value: number): boolean {
  return Number.isSafeInteger(value) && value > 0 && (value & (value - 1)) === 0 && value <= 2 ** 30;
}
