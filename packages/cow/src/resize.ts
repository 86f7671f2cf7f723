/**
 * Resizing a COW image in place (qemu-img resize). The header's size fixes
 * the layout: the bitmap has one bit per sector and the data area starts
 * after it, aligned. So an image can change size in place only while the
 * bitmap still fits before the data area, that is while the data offset
 * stays where it is (QEMU's old cow driver could not resize at all; a copy
 * with `convert` handles every other case).
 */
import { BlockError, type Storage, writeTo } from '@blk/core/portable';
import type { CowHeader } from './codec.js';
import { computeLayout, type CowLayout } from './layout.js';
import { COW_SECTOR_SIZE, VARIANTS } from './variants.js';

const SS = COW_SECTOR_SIZE;
/** Sectors beyond which no image can go (data ends below 2^53 bytes). */
const MAX_SECTORS = Math.floor(Number.MAX_SAFE_INTEGER / SS);

export interface ResizePlan {
  header: CowHeader;
  layout: CowLayout;
}

/** The layout of `header` at `sectors` sectors. */
function layoutAt(header: CowHeader, sectors: number): CowLayout {
  return computeLayout({ ...header, size: sectors * SS });
}

/**
 * The range of sizes (bytes) this image can take without moving its data:
 * the data offset only grows with the size, so two binary searches find it.
 */
export function inPlaceRange(header: CowHeader, layout: CowLayout): { min: number; max: number } {
  const same = (s: number): boolean => layoutAt(header, s).dataOffset === layout.dataOffset;
  let lo = 1;
  let hi = layout.sectors;
  while (lo < hi) {
    const mid = Math.floor((lo + hi) / 2);
    if (layoutAt(header, mid).dataOffset >= layout.dataOffset) hi = mid;
    else lo = mid + 1;
  }
  const min = lo;
  lo = layout.sectors;
  hi = MAX_SECTORS;
  while (lo < hi) {
    const mid = Math.ceil((lo + hi) / 2);
    if (same(mid) && Number.isSafeInteger(layout.dataOffset + mid * SS)) lo = mid;
    else hi = mid - 1;
  }
  return { min: min * SS, max: lo * SS };
}

/**
 * Checks that the image can take `size` in place and returns its new header
 * and layout. `backingSize`: the backing file's size, when it is open.
 */
export function planResize(
  header: CowHeader,
  layout: CowLayout,
  size: number,
  backingSize: number | undefined,
  path: string,
): ResizePlan {
  const where = { path, driver: 'cow', field: 'size' };
  const variant = header.variant;
  if (!Number.isSafeInteger(size) || size <= 0 || size % SS !== 0) {
    throw new BlockError('invalid-argument', `The new size must be a multiple of 512 (not ${size})`, where);
  }
  if (VARIANTS[variant].formula === 'uml-legacy' && size % 4096 !== 0) {
    // Below a multiple of 4096 the v1/v2 bitmap rounds down and leaves sectors without a bit.
    throw new BlockError(
      'not-supported',
      `a ${variant} image can only take sizes that are a multiple of 4096 (the v1/v2 rounding bug), not ${size}`,
      where,
    );
  }
  const next: CowHeader = { ...header, size };
  const nextLayout = computeLayout(next);
  if (
    nextLayout.bitmapOffset !== layout.bitmapOffset
    || nextLayout.dataOffset !== layout.dataOffset
    || !Number.isSafeInteger(nextLayout.dataOffset + size)
  ) {
    const { min, max } = inPlaceRange(header, layout);
    throw new BlockError(
      'not-supported',
      `format 'cow' cannot resize this ${variant} image to ${size} bytes in place: its bitmap would need `
        + `${nextLayout.bitmapLength} bytes and the data area would move from offset ${layout.dataOffset} to `
        + `${nextLayout.dataOffset} (in place it can take ${min} to ${max} bytes); resize a copy `
        + `instead (blk convert -O raw ${path} COPY, then blk resize COPY ${size})`,
      where,
    );
  }
  if (VARIANTS[variant].family === 'uml' && header.backingFile !== '') {
    // UML compares this field with the backing file's size at every open and refuses the pair on a difference.
    if (backingSize === undefined) {
      throw new BlockError(
        'not-supported',
        `a ${variant} image records its backing file's size, which must stay equal to its own: open the backing file `
          + 'so that its size can be checked',
        where,
      );
    }
    if (backingSize !== size) {
      throw new BlockError(
        'not-supported',
        `a ${variant} image records its backing file's size (${header.size} bytes) as its own, and UML refuses the pair `
          + `when they differ: the backing file is ${backingSize} bytes, so resize it to ${size} bytes first`,
        where,
      );
    }
  }
  return { header: next, layout: nextLayout };
}

const SCAN_CHUNK = 64 * 1024;

/**
 * Counts the set bits among [fromBit, toBit) of the bitmap at `bitmapOffset`
 * on storage (bytes past EOF read as clear) and, with `clear`, clears them,
 * writing only the pieces that had a bit set (the rest may stay holes).
 * Goes straight to storage: callers write the bitmap cache back first and
 * drop it after.
 */
export async function setBitsOnDisk(
  storage: Storage,
  bitmapOffset: number,
  fromBit: number,
  toBit: number,
  clear: boolean,
): Promise<number> {
  if (toBit <= fromBit) return 0;
  let count = 0;
  const lastByte = Math.ceil(toBit / 8);
  for (let byte = Math.floor(fromBit / 8); byte < lastByte; byte += SCAN_CHUNK) {
    const buf = new Uint8Array(Math.min(SCAN_CHUNK, lastByte - byte));
    const got = await storage.read(bitmapOffset + byte, buf);
    let changed = false;
    for (let i = 0; i < got; i++) {
      let value = buf[i]!;
      if (value === 0) continue;
      for (let bit = 0; bit < 8; bit++) {
        const n = (byte + i) * 8 + bit;
        if (n < fromBit || n >= toBit || (value & (1 << bit)) === 0) continue;
        count++;
        value &= ~(1 << bit);
      }
      if (clear && value !== buf[i]) {
        buf[i] = value;
        changed = true;
      }
    }
    if (changed) await writeTo(storage, bitmapOffset + byte, buf.subarray(0, got));
  }
  return count;
}

/** Sets every bit among [fromBit, toBit) of the bitmap at `bitmapOffset` on storage (straight to storage, as `setBitsOnDisk`). */
export async function setBitRangeOnDisk(
  storage: Storage,
  bitmapOffset: number,
  fromBit: number,
  toBit: number,
): Promise<void> {
  const lastByte = Math.ceil(toBit / 8);
  for (let byte = Math.floor(fromBit / 8); byte < lastByte; byte += SCAN_CHUNK) {
    const buf = new Uint8Array(Math.min(SCAN_CHUNK, lastByte - byte));
    buf.fill(0, await storage.read(bitmapOffset + byte, buf));
    for (let i = 0; i < buf.length; i++) {
      const first = (byte + i) * 8;
      if (first >= fromBit && first + 8 <= toBit) {
        buf[i] = 0xff;
        continue;
      }
      for (let bit = 0; bit < 8; bit++) if (first + bit >= fromBit && first + bit < toBit) buf[i]! |= 1 << bit;
    }
    await writeTo(storage, bitmapOffset + byte, buf);
  }
}
