/**
 * An opened COW image: routes sector runs between the data area and the
 * layer below, and keeps data writes ahead of the bitmap bits that publish
 * them.
 */
import { type BackingReference, type BackingSpec, type BlockDriver, type BlockStatus, type CacheMode, type DriverCheckResult, type DriverImage, type ReadBelow, type ReadBelowSync, type RepairRequest, type ResizeOptions, type Storage } from '@blk/core';
import { BitmapCache } from './bitmap-cache.js';
import { type CowHeader } from './codec.js';
import type { CowLayout } from './layout.js';
export interface CowImageParts {
    driver: BlockDriver;
    storage: Storage;
    header: CowHeader;
    /** The header bytes as read, so that rewriting fields keeps every other byte. */
    headerBytes: Uint8Array;
    layout: CowLayout;
    readOnly: boolean;
    cache: CacheMode;
    bitmapCacheBytes?: number;
}
/** Stored mtime: the whole seconds modulo 2^32, as UML's htobe32 truncation does. */
export declare function mtime32(seconds: number): number;
export declare class CowImage implements DriverImage {
    readonly driver: BlockDriver;
    readonly sectorSize = 512;
    /** Virtual size; changes only through `resize`. */
    size: number;
    layout: CowLayout;
    private header;
    private headerBytes;
    private readonly storage;
    private readonly readOnly;
    private readonly cache;
    private readonly bitmapCacheBytes;
    /** The bitmap, loaded piecewise; exposed for tests and diagnostics (replaced when the layout changes). */
    bitmap: BitmapCache;
    private closed;
    constructor(parts: CowImageParts);
    /** A cache over the bitmap of the current layout (empty: chunks load on demand). */
    private newBitmapCache;
    get variant(): CowHeader['variant'];
    /** UML variants record the backing file's size and mtime and UML refuses to open on a mismatch; QEMU checks neither. */
    get backing(): BackingReference | undefined;
    read(offset: number, into: Uint8Array, below: ReadBelow): Promise<void>;
    /**
     * `read` done synchronously, or false having changed nothing but `into`
     * (see `DriverImage.readSync`): when every bitmap chunk the request needs
     * is cached and the storage reads synchronously. Allocates nothing for a
     * request that is one run.
     */
    readSync(offset: number, into: Uint8Array, below: ReadBelowSync): boolean;
    write(offset: number, data: Uint8Array): Promise<void>;
    blockStatus(offset: number, length: number): Promise<BlockStatus>;
    discard(offset: number, length: number): Promise<void>;
    flush(): Promise<void>;
    close(): Promise<void>;
    /**
     * Changes the size in place, within what the layout allows (see
     * resize.ts). Order: the bitmap cache is written back; the bits that must
     * read clear at the new size (a grow's new sectors, a shrink's dropped
     * ones) are cleared, the file is extended to hold the new bitmap, and that
     * is made durable; then the header's size; then the file's length. A crash between steps leaves the old size with only
     * meaningless bits cleared, or the new size with a file of the old length
     * (both read correctly: data past EOF reads as zeros).
     */
    resize(size: number, options: ResizeOptions): Promise<void>;
    /**
     * A grow adds zeros, as in QEMU (which zero-writes the new area of an
     * overlay whose backing file is longer): left unallocated, the new sectors
     * would fall through to whatever the backing file holds there, data this
     * disk never had (after a shrink, its own old data coming back). They are
     * allocated before the header names them, over a data area that reads as
     * zeros: preallocated, or extended sparsely (`resize` dropped the bytes
     * past the old data area first). Only where a backing file may hold
     * data: up to its size when it is known, the whole new area otherwise.
     */
    private zeroGrownArea;
    /** The sizes (bytes) `resize` can give this image without moving its data area. */
    inPlaceSizes(): {
        min: number;
        max: number;
    };
    check(repair: RepairRequest): Promise<DriverCheckResult>;
    amend(options: ReadonlyMap<string, string>, context: ResizeOptions): Promise<void>;
    /**
     * Rewrites the backing path and mtime in place, in the image's own layout
     * (UML rewrites a v3 header even over v1/v2 files, corrupting them; we do
     * not). Every other header byte is kept. The size stays: it fixes the
     * layout, so a UML image cannot be pointed at a backing file of another size.
     */
    setBacking(spec: BackingSpec | undefined): Promise<void>;
    /** Throws what `setBacking(spec)` would refuse with, writing nothing. */
    checkBacking(spec: BackingSpec | undefined): void;
    /**
     * A header of several sectors cannot be rewritten atomically, and UML checks
     * the path and the mtime together. So the sector that holds the mtime and
     * size (sector 0 in v1/v3, 2 in QEMU's v2, 8 in UML's v2) goes first and is
     * flushed before the rest: every torn state then carries the new backing
     * file's mtime and size, which is how a re-run of rebase recognises an
     * interrupted rewrite and finishes it (see @blk/cli's rebase job).
     */
    private writeHeaderInTwoSteps;
    info(): Record<string, unknown>;
    /** v1/v2-uml sectors past the bitmap's last whole byte have no bit: UML loses writes there, we refuse them. */
    private checkTracked;
    private checkOpen;
    private checkWritable;
}
