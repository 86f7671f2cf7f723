/**
 * Creating COW files, byte-compatible with the writer of each variant:
 * uml_mkcow / UML for v3 (the default), QEMU's cow_create for v2-qemu-*,
 * and the old UML layouts for test fixtures.
 */
import { type DriverCreateOptions, type MeasureInput, type MeasureResult, type Storage } from '@blk/core';
/** UML's page size, which it stores as the v3 alignment. */
export declare const DEFAULT_V3_ALIGNMENT = 4096;
/**
 * qemu-img measure for cow: the header and bitmap up to the data offset,
 * plus the data of the source (each sector's data has its fixed place in
 * the data area; a sparse file stores only what was written). Sizes round
 * up to whole sectors, as QEMU's do.
 */
export declare function measureCow(input: MeasureInput): Promise<MeasureResult>;
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
export declare function createCow(storage: Storage, options: DriverCreateOptions): Promise<void>;
