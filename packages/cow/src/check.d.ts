/**
 * What `blk check` can find wrong in a COW file besides its header (which
 * `open` validates), and how each is repaired (qemu-img check -r):
 *
 * - allocated sectors whose data lies past the end of the file (a file
 *   truncated, or a crash between a bitmap write and the data's extension):
 *   a corruption. They read as zeros today; the repair extends the file so
 *   that they lie inside it and still read as zeros: what the guest sees
 *   does not change, and the bitmap and file agree again.
 * - bytes past the end of the data area (dataOffset + size): nothing can
 *   read them; leaked. The repair truncates the file there.
 * - bits set for sectors past the last one, in the slack of the bitmap's
 *   last byte: nothing reads them, but a grow would make them allocate
 *   sectors nobody wrote; leaked. The repair clears them.
 *
 * The backing chain (missing file, changed size or mtime) is the CLI's
 * check and no repair of the image itself can fix it.
 */
import type { DriverCheckResult, RepairRequest, Storage } from '@blk/core';
import type { BitmapCache } from './bitmap-cache.js';
import type { CowLayout } from './layout.js';
export interface CowCheckTarget {
    storage: Storage;
    layout: CowLayout;
    bitmap: BitmapCache;
}
export interface CowCheckOutcome extends DriverCheckResult {
    /** True when bits were changed on disk behind the bitmap cache (the caller drops the cache). */
    bitmapChanged: boolean;
}
export declare function checkCow(target: CowCheckTarget, repair: RepairRequest): Promise<CowCheckOutcome>;
