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
export { COW_MAGIC, COW_SECTOR_SIZE, COW_VARIANTS, MAX_HEADER_SIZE, VARIANTS, fieldOf, isCowVariant, maxPathBytes, } from './variants.js';
export { encodeBackingPath, encodeHeader, magicOrderOf, parseHeader } from './codec.js';
export { detectVariant } from './detect.js';
export { computeLayout } from './layout.js';
export { validateHeader } from './validate.js';
export { BitmapCache, BitmapChunk, DEFAULT_BITMAP_CACHE_BYTES, DEFAULT_CHUNK_BYTES, } from './bitmap-cache.js';
export { CowImage, mtime32 } from './cow-image.js';
export { DEFAULT_V3_ALIGNMENT, createCow, measureCow } from './create.js';
export { inPlaceRange, planResize } from './resize.js';
export { AMEND_HELP, AMEND_OPTIONS, planAmend } from './amend.js';
export { checkCow } from './check.js';
export { COW_PREALLOCATION, CREATE_VARIANTS, defaultCreateVariant, parseCreateOptions, parseOpenOptions, } from './options.js';
