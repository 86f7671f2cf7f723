/**
 * @blk/cow: User-Mode-Linux copy-on-write overlays for @blk/core.
 *
 * Reads and writes all six header layouts the format has had (v1, v2 as UML
 * and as QEMU wrote it on 64- and 32-bit hosts, v3 and the broken 64-bit v3),
 * creates v3 by default, and keeps the bitmap in a bounded on-demand cache.
 */
import { cowDriver } from './driver.js';

export { cowDriver };
export default cowDriver;

export {
  COW_MAGIC,
  COW_SECTOR_SIZE,
  COW_VARIANTS,
  MAX_HEADER_SIZE,
  VARIANTS,
  fieldOf,
  isCowVariant,
  maxPathBytes,
  type ByteOrder,
  type CowVariant,
  type FieldSpec,
  type HeaderField,
  type LayoutFormula,
  type VariantSpec,
} from './variants.js';
export {
  encodeBackingPath,
  encodeHeader,
  magicOrderOf,
  parseHeader,
  type CowHeader,
  type ParseOptions,
} from './codec.js';
export { detectVariant, type Detection } from './detect.js';
export { computeLayout, type CowLayout, type LayoutInput } from './layout.js';
export { validateHeader } from './validate.js';
export {
  BitmapCache,
  type BitmapChunk,
  DEFAULT_BITMAP_CACHE_BYTES,
  DEFAULT_CHUNK_BYTES,
  type BitRun,
  type BitmapCacheOptions,
} from './bitmap-cache.js';
export { CowImage, type CowImageParts } from './cow-image.js';
export {
  COMMIT_MARK_MTIME,
  checksBacking,
  compareBackingFacts,
  mtime32,
  recordedBackingSize,
  recordedMtime,
} from './backing.js';
export { DEFAULT_V3_ALIGNMENT, createCow, measureCow } from './create.js';
export { inPlaceRange, planResize, type ResizePlan } from './resize.js';
export { AMEND_HELP, AMEND_OPTIONS, planAmend } from './amend.js';
export { checkCow, type CowCheckOutcome, type CowCheckTarget } from './check.js';
export {
  COW_PREALLOCATION,
  CREATE_OPTIONS,
  CREATE_VARIANTS,
  defaultCreateVariant,
  parseCreateOptions,
  parseOpenOptions,
  type CowCreateOptions,
  type CowCreateVariant,
  type CowOpenOptions,
} from './options.js';
