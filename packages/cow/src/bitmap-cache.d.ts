/**
 * The allocation bitmap, cached in chunks that are loaded on demand.
 *
 * UML and QEMU read the whole bitmap into memory at open: 256 MiB for a 1 TiB
 * disk. Here the bitmap is cut into chunks (4 KiB of bitmap = 16 MiB of
 * disk each) that are read when first needed and dropped least-recently-used
 * first, so opening any image costs one header read and memory stays under
 * `maxBytes`, give or take a chunk per concurrent request: a chunk loaded for
 * a request stays until that request used it (see `withChunk`).
 *
 * Bit order (spec §2.1): sector n is byte n >> 3, mask 1 << (n & 7).
 *
 * Write-back of changed bits follows the image's cache mode:
 * - `writeback` / `unsafe`: changed chunks stay dirty in memory until
 *   `writeBack()`, which (1) snapshots the dirty bytes, (2) flushes the
 *   storage so the data behind those bits is durable, (3) writes the
 *   snapshots, (4) flushes again (`unsafe` skips both flushes). The snapshot
 *   is taken *before* (2) on purpose: a bit set while (2) runs belongs to data
 *   that (2) may not have covered, so it must wait for the next write-back.
 *   Write-backs are serialised.
 * - `writethrough`: the caller makes the data durable before setting bits,
 *   so every bit in memory may go to disk at once: `writeChunks()` writes
 *   the latest state of each changed chunk.
 *
 * Two writes of the same bitmap bytes that are in flight together can land
 * in either order, so all writes of one chunk go through that chunk's queue;
 * and a chunk is marked clean only if no bit changed since the bytes written
 * were copied (a per-chunk generation counter), so no bit is ever lost.
 */
import { type CacheMode, type Storage } from '@blk/core';
export declare const DEFAULT_BITMAP_CACHE_BYTES: number;
export declare const DEFAULT_CHUNK_BYTES = 4096;
export interface BitmapCacheOptions {
    storage: Storage;
    /** File offset of bitmap byte 0. */
    bitmapOffset: number;
    /** Bytes of bitmap on disk; nothing outside [bitmapOffset, bitmapOffset + bitmapLength) is ever written. */
    bitmapLength: number;
    /** Bits that carry meaning (sectors with a bit inside the bitmap); bits past it read as clear. */
    trackedBits: number;
    mode: CacheMode;
    /** Upper bound on cached bitmap bytes (default 8 MiB; at least one chunk is always kept). */
    maxBytes?: number;
    /** Bytes per chunk (default 4096, a multiple of 4 for word scans). */
    chunkBytes?: number;
}
/** A run of equal bits starting at the queried bit. */
export interface BitRun {
    set: boolean;
    count: number;
}
/** One cached piece of the bitmap (opaque outside this module). */
export declare class BitmapChunk {
    readonly index: number;
    readonly bitmapStart: number;
    readonly bytes: Uint8Array;
    /** Same memory as `bytes`, for skipping 32 bits at a time (byte order is irrelevant for all-0/all-1 tests). */
    readonly words: Uint32Array;
    /** Byte range [dirtyStart, dirtyEnd) inside the chunk that differs (or may differ) from disk. */
    dirtyStart: number;
    dirtyEnd: number;
    /** Bumped on every change, so a write-back can tell whether it wrote the latest state. */
    generation: number;
    /** Queue of this chunk's storage writes. */
    queue: Promise<void>;
    /** Used since the eviction clock last passed it (second-chance replacement instead of LRU reordering). */
    referenced: boolean;
    /** `bitmapStart`: offset of byte 0 of the chunk inside the bitmap. */
    constructor(index: number, bitmapStart: number, length: number);
    get dirty(): boolean;
    markDirty(start: number, end: number): void;
    markClean(): void;
}
export declare class BitmapCache {
    private readonly storage;
    private readonly bitmapOffset;
    private readonly bitmapLength;
    private readonly trackedBits;
    private readonly mode;
    private readonly maxBytes;
    private readonly chunkBytes;
    private readonly chunkBits;
    /** Cached chunks in load order, revisited by the eviction clock (Map keeps insertion order). */
    private readonly chunks;
    /**
     * Bumped whenever a bit changes in memory or a chunk leaves the cache: a
     * scan window read before that may no longer show what the bitmap is.
     */
    private version;
    private window;
    private readonly loading;
    /** Requests waiting for each chunk (see `withChunk`): a pinned chunk is never evicted. */
    private readonly pinned;
    private cached;
    private writeBackQueue;
    /** Chunks read from storage so far (for tests and diagnostics). */
    loads: number;
    constructor(options: BitmapCacheOptions);
    /** Bitmap bytes held in memory now. */
    get cachedBytes(): number;
    /** Chunks whose changes are not on disk yet. */
    get dirtyChunks(): number;
    /**
     * The run of equal bits that starts at `first`, at most `count` long.
     * Bits at or past `trackedBits` read as clear.
     */
    findRun(first: number, count: number): Promise<BitRun>;
    /**
     * `findRun` done synchronously over cached chunks only, without
     * allocating: returns the run's length, positive when its bits are set,
     * negative when they are clear, or 0 when a chunk it needs is not cached
     * (nothing is loaded then; use `findRun`).
     */
    findRunSync(first: number, count: number): number;
    /**
     * `findRun` over many chunks: streams the bitmap through one reused window
     * instead of loading (and caching) every chunk. Cached chunks win over the
     * window, since they may hold bits not yet written (dirty).
     */
    private streamRun;
    /**
     * Whether bitmap byte `start` is stored (data) or in a hole of the file
     * (sparse, or past its end), and where that extent ends (a bitmap byte
     * offset, looking no further than bit `endBit`). A bitmap in a hole reads
     * as clear, so a scan skips it whole: one lookup per hole, not a read per
     * byte (a 64 TiB overlay has a 16 GiB bitmap that is mostly never written).
     */
    private extentFrom;
    /**
     * The first cached chunk whose bytes lie in [chunk `index`, bitmap byte
     * `endByte`), or the chunk at `endByte`: by looking up each chunk of the
     * range or by going through the cache, whichever is fewer steps.
     */
    private firstCachedChunk;
    private windowHolds;
    /**
     * Reads the window's worth of bitmap from chunk `index` on, up to the chunk
     * holding bitmap byte `endByte - 1`; leaves it invalid if anything changed meanwhile.
     */
    private loadWindow;
    /**
     * Sets (or clears) the bits [first, first + count) in memory and marks the
     * changed chunks dirty. Bits past `trackedBits` are not touched. Returns
     * the chunks that changed, for `writeChunks`.
     */
    setRange(first: number, count: number, value: boolean): Promise<BitmapChunk[]>;
    /**
     * Writes the current in-memory state of the given chunks (from `setRange`)
     * without any storage flush. Only for `writethrough`, where every bit in
     * memory already has its data on disk.
     */
    writeChunks(chunks: readonly BitmapChunk[]): Promise<void>;
    /**
     * Puts every dirty bit on disk, in the cache mode's order (see the file
     * comment), and flushes the storage even when no bit is dirty (except in
     * `unsafe` mode), so it also serves as the image's flush. Serialised.
     */
    writeBack(): Promise<void>;
    private writeBackOnce;
    /** Writes a chunk's latest dirty bytes through its queue (the state is read when the write starts). */
    private writeLatest;
    private enqueue;
    /**
     * Runs `fn` on the cached chunk `index`, loading it first if needed. `fn`
     * runs synchronously right after the chunk is confirmed to be in the cache,
     * so it never changes a chunk that was evicted meanwhile.
     *
     * While a request waits for a load, the chunk is pinned: it is not evicted
     * before the request used it. Without that, more concurrent requests than
     * the cache has room for would evict each other's chunks between a load
     * completing and its waiter running, and reload them forever (a livelock
     * made only of microtasks, so no timer or signal could even run).
     */
    private withChunk;
    private load;
    /** Evicts clean chunks (writing dirty ones back first if that is all there is) until `length` more bytes fit. */
    private makeRoom;
    private anyEvictableDirty;
    private evictClean;
    /**
     * Clock (second chance): in load order, a clean chunk used since the clock
     * last passed it is moved to the back unmarked, the first unused clean one
     * is evicted. Lookups then only set a flag instead of reordering the Map.
     */
    private evictOneClean;
}
