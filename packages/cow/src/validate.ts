/**
 * Sanity checks on a decoded header, before any value is used.
 *
 * UML checks nothing ("need to sanity-check the values read from the header"
 * says cow_user.c) and crashes on alignment 0; we treat the header as hostile
 * input and reject, with the field at fault, every value that would make the
 * layout arithmetic or the I/O meaningless.
 */
import { BlockError, MAX_OFFSET, isPowerOfTwo } from '@blk/core/portable';
import type { CowHeader } from './codec.js';
import { computeLayout, type CowLayout } from './layout.js';
import { COW_SECTOR_SIZE, type HeaderField } from './variants.js';

const GiB = 2 ** 30;

/**
 * Validates `header` (decoded from the file `path` of `fileSize` bytes) and
 * returns its layout. Throws `unsupported-version` for a cow_format other than
 * 0, `invalid-header` for impossible values, `truncated` when the file ends
 * before the end of its bitmap.
 */
export function validateHeader(header: CowHeader, fileSize: number, path: string): CowLayout {
  const fail = (field: HeaderField, message: string): never => {
    throw new BlockError('invalid-header', message, { path, field, driver: 'cow' });
  };
  if (header.cowFormat !== undefined && header.cowFormat !== 0) {
    throw new BlockError(
      'unsupported-version',
      `cow_format ${header.cowFormat} is not supported (0, the bitmap scheme, is the only one defined)`,
      { path, field: 'cow_format', driver: 'cow' },
    );
  }
  // UML's I/O path hard-codes 512 while its layout code uses this field: any other value is read inconsistently.
  if (header.sectorSize !== COW_SECTOR_SIZE) fail('sectorsize', `sector size ${header.sectorSize} is not 512`);
  if (header.size === 0) fail('size', 'size is 0');
  if (header.size % COW_SECTOR_SIZE !== 0) {
    fail('size', `size ${header.size} is not a multiple of 512 (UML and QEMU disagree on a partial last sector)`);
  }
  if (header.size > MAX_OFFSET)
    fail('size', `size ${header.size} is beyond what the file can address (2^53 - 1 bytes)`);
  if (header.alignment !== undefined) {
    if (header.alignment === 0) fail('alignment', 'alignment is 0');
    if (header.alignment > GiB) fail('alignment', `alignment ${header.alignment} is above 1 GiB`);
    if (!isPowerOfTwo(header.alignment)) fail('alignment', `alignment ${header.alignment} is not a power of two`);
  }
  const layout = computeLayout(header);
  if (!Number.isSafeInteger(layout.dataOffset + header.size)) {
    fail(
      'size',
      `data area ends at ${layout.dataOffset} + ${header.size}, beyond what the file can address (2^53 - 1 bytes)`,
    );
  }
  const bitmapEnd = layout.bitmapOffset + layout.bitmapLength;
  if (bitmapEnd > fileSize) {
    throw new BlockError(
      'truncated',
      `file is ${fileSize} bytes but its bitmap ends at ${bitmapEnd} (offset ${layout.bitmapOffset}, ${layout.bitmapLength} bytes)`,
      { path, field: 'bitmap', driver: 'cow', offset: fileSize },
    );
  }
  return layout;
}
