/**
 * Resizing a COW image in place (qemu-img resize). The header's size fixes
 * the layout: the bitmap has one bit per sector and the data area starts
 * after it, aligned. So an image can change size in place only while the
 * bitmap still fits before the data area, that is while the data offset
 * stays where it is (QEMU's old cow driver could not resize at all; a copy
 * with `convert` handles every other case).
 */
import { type Storage } from '@blk/core';
import type { CowHeader } from './codec.js';
import { type CowLayout } from './layout.js';
export interface ResizePlan {
    header: CowHeader;
    layout: CowLayout;
}
/**
 * The range of sizes (bytes) this image can take without moving its data:
 * the data offset only grows with the size, so two binary searches find it.
 */
export declare function inPlaceRange(header: CowHeader, layout: CowLayout): {
    min: number;
    max: number;
};
/**
 * Checks that the image can take `size` in place and returns its new header
 * and layout. `backingSize`: the backing file's size, when it is open.
 */
export declare function planResize(header: CowHeader, layout: CowLayout, size: number, backingSize: number | undefined, path: string): ResizePlan;
/**
 * Counts the set bits among [fromBit, toBit) of the bitmap at `bitmapOffset`
 * on storage (bytes past EOF read as clear) and, with `clear`, clears them,
 * writing only the pieces that had a bit set (the rest may stay holes).
 * Goes straight to storage: callers write the bitmap cache back first and
 * drop it after.
 */
export declare function setBitsOnDisk(storage: Storage, bitmapOffset: number, fromBit: number, toBit: number, clear: boolean): Promise<number>;
/** Sets every bit among [fromBit, toBit) of the bitmap at `bitmapOffset` on storage (straight to storage, as `setBitsOnDisk`). */
export declare function setBitRangeOnDisk(storage: Storage, bitmapOffset: number, fromBit: number, toBit: number): Promise<void>;
