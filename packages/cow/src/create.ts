/**
 * Creating COW files, byte-compatible with the writer of each variant:
 * uml_mkcow / UML for v3 (the default), QEMU's cow_create for v2-qemu-*,
 * and the old UML layouts for test fixtures.
 */
import {
  BlockError,
  alignUp,
  preallocate,
  supportedPreallocation,
  type DriverCreateOptions,
  type MeasureInput,
  type MeasureResult,
  type Storage,
  truncateTo,
  writeTo,
} from '@blk/core/portable';
import { encodeBackingPath, encodeHeader, type CowHeader } from './codec.js';
import { recordedBackingSize, recordedMtime } from './backing.js';
import { detectVariant } from './detect.js';
import { computeLayout } from './layout.js';
import { COW_PREALLOCATION, parseCreateOptions } from './options.js';
import { COW_SECTOR_SIZE, MAX_HEADER_SIZE, VARIANTS } from './variants.js';

/** UML's page size, which it stores as the v3 alignment. */
export const DEFAULT_V3_ALIGNMENT = 4096;

/** The header a new image of `size` would get from these options (no backing file). */
function headerFor(variant: CowHeader['variant'], size: number, alignment: number | undefined): CowHeader {
  const header: CowHeader = {
    variant,
    magicOrder: VARIANTS[variant].defaultMagicOrder,
    version: VARIANTS[variant].version,
    backingFile: '',
    mtime: 0,
    size,
    sectorSize: COW_SECTOR_SIZE,
  };
  if (variant === 'v3') {
    header.alignment = alignment ?? DEFAULT_V3_ALIGNMENT;
    header.cowFormat = 0;
  }
  return header;
}

/**
 * qemu-img measure for cow: the header and bitmap up to the data offset,
 * plus the data of the source (each sector's data has its fixed place in
 * the data area; a sparse file stores only what was written). Sizes round
 * up to whole sectors, as QEMU's do.
 */
export async function measureCow(input: MeasureInput): Promise<MeasureResult> {
  // What convert -O cow writes: no backing file, so QEMU's layout unless a variant is named.
  const { variant, alignment } = parseCreateOptions(input.driverOptions, undefined, false);
  const mode = supportedPreallocation(input.preallocation, COW_PREALLOCATION, { driver: 'cow' });
  const size = alignUp(input.size, COW_SECTOR_SIZE);
  if (!Number.isSafeInteger(size) || size <= 0) {
    throw new BlockError('invalid-argument', `size ${input.size} must be a positive integer below 2^53`, {
      driver: 'cow',
      field: 'size',
    });
  }
  const layout = computeLayout(headerFor(variant, size, alignment));
  const fullyAllocated = layout.dataOffset + size;
  if (!Number.isSafeInteger(fullyAllocated)) {
    throw new BlockError('invalid-argument', `size ${size} puts the end of the data area beyond 2^53 - 1 bytes`, {
      driver: 'cow',
      field: 'size',
    });
  }
  if (mode === 'falloc' || mode === 'full') return { required: fullyAllocated, fullyAllocated };
  const data = input.dataBytes ? Math.min(await input.dataBytes(COW_SECTOR_SIZE), size) : 0;
  return { required: layout.dataOffset + data, fullyAllocated };
}

/**
 * Writes a new, empty COW image into `storage`.
 *
 * - v3 (the default with a backing file): the header as uml_mkcow writes
 *   it, then the file is extended (sparsely) to data offset + size, as UML does.
 * - v2-qemu-* (v2-qemu-lp64 is the default without a backing file, as
 *   QEMU's cow_create wrote it on x86_64: empty path, mtime 0): QEMU's
 *   header; the file ends right after the bitmap.
 * - v1, v2-uml: for test fixtures only, sizes a multiple of 4096 (so the
 *   v1/v2 rounding bug cannot bite).
 *
 * UML variants need a backing file whose size is the image's size: UML
 * checks both at every open and refuses the pair otherwise.
 */
export async function createCow(storage: Storage, options: DriverCreateOptions): Promise<void> {
  const path = storage.path;
  const hasBacking = options.backing !== undefined && options.backing.path !== '';
  const { variant, alignment } = parseCreateOptions(options.driverOptions, path, hasBacking);
  const preallocation = supportedPreallocation(options.preallocation, COW_PREALLOCATION, { path, driver: 'cow' });
  const spec = VARIANTS[variant];
  const size = options.size;
  const bad = (message: string, field: string): BlockError =>
    new BlockError('invalid-argument', message, { path, field, driver: 'cow' });
  if (!Number.isSafeInteger(size) || size <= 0 || size % COW_SECTOR_SIZE !== 0) {
    throw bad(`size ${size} must be a positive multiple of 512 bytes`, 'size');
  }
  if ((variant === 'v1' || variant === 'v2-uml') && size % 4096 !== 0) {
    throw bad(
      `${variant} images are created only with sizes that are a multiple of 4096 (the rounding bug), not ${size}`,
      'size',
    );
  }
  const backing = options.backing;
  if (spec.family === 'uml') {
    if (!backing || backing.path === '') {
      // An empty v3 path would make the file read back as v3-broken (bytes 32..35 all zero).
      throw bad(
        `a ${variant} image needs a backing file (UML overlays always name one, and v3 cannot store an `
          + "empty path); without one, use version 2 (v2-qemu-lp64, QEMU's layout: the default without a backing file)",
        'backing_file',
      );
    }
    const backingSize = recordedBackingSize(backing.facts);
    if (backingSize !== undefined && backingSize !== size) {
      throw bad(
        `a ${variant} image must have its backing file's size (${backingSize} bytes), not ${size}: `
          + 'UML refuses to open the pair otherwise; use v2-qemu-lp64 for an overlay of another size',
        'size',
      );
    }
  }
  const backingFile = backing?.path ?? '';
  encodeBackingPath(variant, backingFile, path);
  const header: CowHeader = {
    variant,
    magicOrder: spec.defaultMagicOrder,
    version: spec.version,
    backingFile,
    // QEMU writes 0 when there is no backing file.
    mtime: backing && backingFile !== '' ? recordedMtime(backing.facts) : 0,
    size,
    sectorSize: COW_SECTOR_SIZE,
  };
  if (variant === 'v3') {
    header.alignment = alignment ?? DEFAULT_V3_ALIGNMENT;
    header.cowFormat = 0;
  }
  const layout = computeLayout(header);
  if (!Number.isSafeInteger(layout.dataOffset + size)) {
    throw bad(`size ${size} puts the end of the data area beyond 2^53 - 1 bytes`, 'size');
  }
  const bytes = encodeHeader(header);
  const length = spec.family === 'qemu' ? layout.bitmapOffset + layout.bitmapLength : layout.dataOffset + size;
  // blk must read back what it writes: a header that would be detected as another layout is never written.
  // (Judged at the file's final length: preallocation may extend it up to the end of the data area.)
  const finalLength =
    preallocation === 'falloc' || preallocation === 'full'
      ? layout.dataOffset + size
      : preallocation === 'metadata'
        ? Math.max(length, layout.dataOffset)
        : length;
  const head = new Uint8Array(Math.min(finalLength, MAX_HEADER_SIZE));
  head.set(bytes.subarray(0, Math.min(bytes.length, head.length)));
  const detected = detectVariant(head, finalLength);
  if (!detected.ok || detected.variant !== variant) {
    throw bad(
      `a ${variant} header for these values would read back as `
        + `${detected.ok ? detected.variant : 'no valid layout'}; not writing it`,
      'variant',
    );
  }
  // The bitmap must start all clear: drop anything the storage held.
  await truncateTo(storage, 0);
  await writeTo(storage, 0, bytes);
  // Holes, not written zeros: the bitmap and data area are sparse until used (unless preallocated).
  await truncateTo(storage, length);
  if (preallocation === 'metadata') await preallocate(storage, bytes.length, layout.dataOffset - bytes.length, 'full');
  if (preallocation === 'falloc' || preallocation === 'full') {
    await preallocate(storage, bytes.length, layout.dataOffset + size - bytes.length, preallocation);
    await truncateTo(storage, layout.dataOffset + size);
  }
}
