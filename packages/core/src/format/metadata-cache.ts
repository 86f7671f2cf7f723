/**
 * A cache over a region of format metadata (a cow allocation bitmap; qcow2's
 * L2 tables and refcount blocks), cut into fixed-size chunks that are read
 * when first needed. It knows nothing about what the bytes mean: a chunk is a
 * `Uint8Array` of the region's bytes (plus an optional `view` the user builds
 * over them once, for example a `Uint32Array` for word scans), and the user
 * reads and changes those bytes and says which ones it changed (`markDirty`).
 *
 * What it does:
 * - **Load on demand, one read per chunk.** Two requests that need the same
 *   uncached chunk share one read (`use`); a region that ends early (past the
 *   end of the file) reads as zeros.
 * - **Bounded memory.** At most `maxBytes` of chunks, give or take one chunk
 *   per concurrent request (a chunk loaded for a request stays until that
 *   request used it: it is *pinned*, never evicted in between). Eviction is a
 *   clock (second chance) over clean chunks; when every unpinned chunk is
 *   dirty they are written back first, in the order below, then evicted.
 * - **Write-back in the order that keeps metadata honest**: metadata that
 *   publishes data (a bitmap bit, an L2 entry) must not reach the disk before
 *   the data it points at. The *barrier* (by default `storage.flush()`; a
 *   qcow2 L2 cache would pass "write back the refcount cache" as QEMU's
 *   `qcow2_cache_set_dependency` does) runs before any metadata write:
 *   - `writeback` / `unsafe`: changed chunks stay dirty until `writeBack()`,
 *     which (1) snapshots the dirty bytes, (2) runs the barrier, (3) writes
 *     the snapshots, (4) flushes the storage (`unsafe` skips both flushes;
 *     a custom barrier still runs). The snapshot comes *before* (2): a byte
 *     changed while (2) runs belongs to data that (2) may not cover, so it
 *     waits for the next write-back. Write-backs are serialised.
 *   - `writethrough`: the user makes the data durable before changing the
 *     metadata, so the latest state of every chunk may go out at once
 *     (`writeChunks`).
 * - **No lost update.** All writes of one chunk go through that chunk's
 *   queue (two writes of the same bytes in flight together may land in
 *   either order), and a chunk is marked clean only if nothing changed since
 *   the bytes written were copied (a per-chunk generation counter). A failed
 *   write leaves the chunk dirty: the next write-back tries again.
 *
 * - **Buffer reuse (opt-in, `reuseBuffers`).** A scan that passes through
 *   many chunks once (a map of a large qcow2 goes through every L2 table)
 *   would otherwise allocate a fresh buffer per chunk and leave the garbage
 *   collector hundreds of MiB of dead `ArrayBuffer`s to find. With
 *   `reuseBuffers`, an evicted chunk's buffer (and its `view`) is kept in a
 *   small pool and given to the next chunk loaded with the same length. The
 *   rule that makes this safe: **a chunk's `bytes` and `view` are the
 *   cache's, valid only while the chunk is cached** — use them inside
 *   `use`'s callback or synchronously after `get`/`cached`, never keep them
 *   across an `await` (copy what must outlive that, as `bytes.slice()`). An
 *   evicted chunk is marked `evicted`; `markDirty` on it throws, so a user
 *   that broke the rule to change bytes fails loudly instead of writing into
 *   another chunk's buffer. Only clean chunks are evicted, so no write-back
 *   ever reads a recycled buffer (`writeLatest` returns on a clean chunk, a
 *   write-back's snapshot is a copy).
 *
 * `version` moves whenever a chunk changes in memory or leaves the cache, so
 * a user that read the region around the cache (cow's streaming scans) can
 * tell that what it read may be stale.
 */
import type { Storage } from '../storage/storage.js';
import { flushStorage, readZeroFilled, writeTo } from '../storage/storage.js';
import type { CacheMode } from './driver.js';

export const DEFAULT_METADATA_CHUNK_BYTES = 4096;

export interface MetadataCacheOptions<V = undefined> {
  storage: Storage;
  /** File offset of region byte 0. */
  offset: number;
  /** Bytes in the region; nothing outside [offset, offset + length) is ever read into a chunk or written. */
  length: number;
  /** Bytes per chunk (the last one may be shorter). Default 4096. */
  chunkBytes?: number;
  /** Upper bound on cached bytes (at least one chunk is always allowed). */
  maxBytes: number;
  mode: CacheMode;
  /**
   * Runs before metadata is written, to make durable what it publishes
   * ("data before metadata"). Default: `storage.flush()`, skipped in `unsafe`
   * mode. Called in `writeback`/`unsafe` write-backs only: in `writethrough`
   * the user orders data itself.
   */
  barrier?: () => Promise<void>;
  /**
   * Builds the chunk's `view` once, when it is loaded. The chunk's buffer is
   * padded with zeros to a multiple of 8 bytes, so a `Uint32Array` or
   * `BigUint64Array` over `bytes.buffer` covers a last partial word.
   */
  view?: (bytes: Uint8Array) => V;
  /**
   * Give evicted chunks' buffers (and views) to later loads of the same
   * length instead of allocating (see the file comment for the rule users
   * must follow: never hold a chunk's bytes or view across an await).
   * Default false.
   */
  reuseBuffers?: boolean;
}

/** Evicted buffers kept for reuse (per cache): enough for the loads in flight of a scan, small next to `maxBytes`. */
const REUSE_POOL_CHUNKS = 4;

/** One cached chunk of the region. */
export class MetadataChunk<V = undefined> {
  /** The chunk's bytes as on disk plus changes not yet written. */
  readonly bytes: Uint8Array;
  /** What `MetadataCacheOptions.view` built over `bytes` (undefined without one). */
  readonly view: V;
  /** Byte range [dirtyStart, dirtyEnd) inside the chunk that differs (or may differ) from disk. */
  dirtyStart = Number.POSITIVE_INFINITY;
  dirtyEnd = 0;
  /** Bumped on every change, so a write-back can tell whether it wrote the latest state. */
  generation = 0;
  /** Queue of this chunk's storage writes. */
  queue: Promise<void> = Promise.resolve();
  /** Used since the eviction clock last passed it (second-chance replacement instead of LRU reordering). */
  referenced = false;
  /** Set when the chunk leaves the cache: its bytes may then belong to another chunk (`reuseBuffers`). */
  evicted = false;

  /**
   * `start`: offset of the chunk's byte 0 inside the region; `makeView` builds `view` (set here, so its type never
   * changes). `reuse`: a buffer and view of an evicted chunk of the same length, taken over instead of allocating.
   */
  constructor(
    readonly index: number,
    readonly start: number,
    length: number,
    makeView?: (bytes: Uint8Array) => V,
    reuse?: { bytes: Uint8Array; view: V },
  ) {
    if (reuse !== undefined && reuse.bytes.length === length) {
      this.bytes = reuse.bytes;
      this.view = reuse.view;
      // The padding past `length` is the user's view's (a last partial word): zeros, as in a fresh buffer.
      new Uint8Array(reuse.bytes.buffer, reuse.bytes.byteOffset + length, ((length + 7) & ~7) - length).fill(0);
      return;
    }
    this.bytes = new Uint8Array(new ArrayBuffer((length + 7) & ~7), 0, length);
    this.view = (makeView === undefined ? undefined : makeView(this.bytes)) as V;
  }

  get dirty(): boolean {
    return this.dirtyEnd > this.dirtyStart;
  }
}

interface Snapshot<V> {
  chunk: MetadataChunk<V>;
  generation: number;
  start: number;
  bytes: Uint8Array;
}

export class MetadataCache<V = undefined> {
  readonly storage: Storage;
  /** File offset of region byte 0. */
  readonly offset: number;
  /** Bytes in the region. */
  readonly length: number;
  readonly chunkBytes: number;
  readonly mode: CacheMode;
  private readonly maxBytes: number;
  private readonly barrier: () => Promise<void>;
  private readonly makeView: ((bytes: Uint8Array) => V) | undefined;
  /** Buffers of evicted chunks waiting for a load of the same length (`reuseBuffers` only). */
  private readonly pool: { bytes: Uint8Array; view: V }[] | undefined;
  /** Cached chunks in load order, revisited by the eviction clock (Map keeps insertion order). */
  private readonly chunks = new Map<number, MetadataChunk<V>>();
  private readonly loading = new Map<number, Promise<void>>();
  /** Requests waiting for each chunk (see `use`): a pinned chunk is never evicted. */
  private readonly pinned = new Map<number, number>();
  private bytesCached = 0;
  private writeBackQueue: Promise<void> = Promise.resolve();
  /** Moves when a chunk changes in memory or leaves the cache. */
  version = 0;
  /** Chunks read from storage so far (for tests and diagnostics). */
  loads = 0;

  constructor(options: MetadataCacheOptions<V>) {
    this.storage = options.storage;
    this.offset = options.offset;
    this.length = options.length;
    this.mode = options.mode;
    this.chunkBytes = options.chunkBytes ?? DEFAULT_METADATA_CHUNK_BYTES;
    if (!Number.isSafeInteger(this.chunkBytes) || this.chunkBytes <= 0)
      throw new RangeError('chunkBytes must be a positive integer');
    this.maxBytes = Math.max(options.maxBytes, this.chunkBytes);
    const storage = options.storage;
    this.barrier = options.barrier ?? (() => (this.mode === 'unsafe' ? Promise.resolve() : flushStorage(storage)));
    this.makeView = options.view;
    if (options.reuseBuffers) this.pool = [];
  }

  /** Buffers allocated by loads so far (loads minus reused buffers; for tests and diagnostics). */
  allocations = 0;

  /** Bytes held in memory now. */
  get cachedBytes(): number {
    return this.bytesCached;
  }

  /** How many chunks the region has. */
  get chunkCount(): number {
    return Math.ceil(this.length / this.chunkBytes);
  }

  /** Chunks whose changes are not on disk yet. */
  get dirtyChunks(): number {
    let n = 0;
    for (const chunk of this.chunks.values()) if (chunk.dirty) n++;
    return n;
  }

  /**
   * The chunk `index` if it is cached, without loading it; counts as a use
   * for eviction. For synchronous fast paths: when it returns undefined, `use`.
   */
  get(index: number): MetadataChunk<V> | undefined {
    const chunk = this.chunks.get(index);
    if (chunk !== undefined) chunk.referenced = true;
    return chunk;
  }

  /** The chunk `index` if it is cached, without counting as a use (for scans that pass by once). */
  cached(index: number): MetadataChunk<V> | undefined {
    return this.chunks.get(index);
  }

  /** Whether chunk `index` is cached (does not count as a use). */
  has(index: number): boolean {
    return this.chunks.has(index);
  }

  /**
   * The first cached chunk in [index, stop), or `stop`: by looking up each
   * index of the range or by going through the cache, whichever is fewer steps.
   */
  firstCached(index: number, stop: number): number {
    if (stop - index <= this.chunks.size) {
      for (let i = index; i < stop; i++) if (this.chunks.has(i)) return i;
      return stop;
    }
    let first = stop;
    for (const i of this.chunks.keys()) if (i >= index && i < first) first = i;
    return first;
  }

  /**
   * Runs `fn` on chunk `index`, loading it first if needed. `fn` runs
   * synchronously right after the chunk is confirmed to be in the cache, so
   * it never sees (or changes) a chunk that was evicted meanwhile.
   *
   * While a request waits for a load, the chunk is pinned: it is not evicted
   * before the request used it. Without that, more concurrent requests than
   * the cache has room for would evict each other's chunks between a load
   * completing and its waiter running, and reload them forever (a livelock
   * made only of microtasks, so no timer or signal could even run).
   */
  async use<T>(index: number, fn: (chunk: MetadataChunk<V>) => T): Promise<T> {
    for (let waited = false; ; waited = true) {
      const chunk = this.chunks.get(index);
      if (chunk) {
        chunk.referenced = true;
        const result = fn(chunk);
        // Chunks loaded while others were pinned may have gone over the bound: give it back now they are free.
        if (waited && this.bytesCached > this.maxBytes) this.evictClean(index);
        return result;
      }
      let pending = this.loading.get(index);
      if (!pending) {
        pending = this.load(index).finally(() => this.loading.delete(index));
        this.loading.set(index, pending);
      }
      this.pinned.set(index, (this.pinned.get(index) ?? 0) + 1);
      try {
        await pending;
      } finally {
        // Synchronous with the lookup above: nothing can evict the chunk in between.
        const left = this.pinned.get(index)! - 1;
        if (left === 0) this.pinned.delete(index);
        else this.pinned.set(index, left);
      }
    }
  }

  /**
   * Chunk `index` without waiting: cached, or loaded here through the storage's synchronous read
   * (`capabilities.syncRead`) when room for it can be made by evicting clean chunks. Undefined,
   * having changed nothing, when that is not possible (an asynchronous storage, a load of the chunk
   * already under way, only dirty or pinned chunks to evict): then `use`. Counts as a use. For
   * callers that do a whole metadata step synchronously (a qcow2 allocating write).
   */
  loadNow(index: number): MetadataChunk<V> | undefined {
    const cached = this.get(index);
    if (cached !== undefined) return cached;
    const storage = this.storage;
    if (!storage.capabilities.syncRead || storage.readSync === undefined) return undefined;
    const chunk = this.newChunkNow(index);
    if (chunk === undefined) return undefined;
    let got: number;
    try {
      got = storage.readSync(this.offset + chunk.start, chunk.bytes);
    } catch (err) {
      this.giveBuffer(chunk); // never seen by any user
      throw err;
    }
    if (got < chunk.bytes.length) chunk.bytes.fill(0, Math.max(0, got)); // past the end of the file: zeros
    this.loads++;
    this.admit(chunk);
    return chunk;
  }

  /**
   * Chunk `index` as all zeros and dirty without reading it (a new table in a cluster the caller
   * just allocated): the cached chunk cleared, or a new one when room can be made by evicting clean
   * chunks. Undefined, having changed nothing, when that is not possible (a load of the chunk under
   * way, only dirty or pinned chunks to evict). Counts as a use.
   */
  createNow(index: number): MetadataChunk<V> | undefined {
    let chunk = this.get(index);
    if (chunk === undefined) {
      chunk = this.newChunkNow(index);
      if (chunk === undefined) return undefined;
      chunk.bytes.fill(0);
      this.admit(chunk);
    } else {
      chunk.bytes.fill(0);
    }
    this.markDirty(chunk, 0, chunk.bytes.length);
    return chunk;
  }

  /** Whether `createNow(index)` would succeed now (for a caller that must know before it commits to anything). */
  canCreateNow(index: number): boolean {
    if (this.chunks.has(index)) return true;
    if (this.loading.has(index)) return false;
    const length = this.chunkLength(index);
    if (this.bytesCached + length <= this.maxBytes) return true;
    for (const chunk of this.chunks.values()) if (!chunk.dirty && !this.pinned.has(chunk.index)) return true;
    return false;
  }

  /** A chunk object for `index`, not cached yet, after evicting clean chunks to make room; undefined when that fails. */
  private newChunkNow(index: number): MetadataChunk<V> | undefined {
    if (this.loading.has(index)) return undefined;
    const length = this.chunkLength(index);
    while (this.bytesCached + length > this.maxBytes && this.chunks.size > 0) {
      if (!this.evictOneClean()) return undefined;
    }
    const reuse = this.takeBuffer(length);
    if (reuse === undefined) this.allocations++;
    return new MetadataChunk<V>(index, index * this.chunkBytes, length, this.makeView, reuse);
  }

  /** Bytes of chunk `index` (checked against the region). */
  private chunkLength(index: number): number {
    const start = index * this.chunkBytes;
    const length = Math.min(this.chunkBytes, this.length - start);
    if (!(length > 0)) throw new RangeError(`metadata chunk ${index} lies past the region's ${this.length} bytes`);
    return length;
  }

  /** Puts a newly made chunk in the cache. */
  private admit(chunk: MetadataChunk<V>): void {
    chunk.referenced = true;
    this.chunks.set(chunk.index, chunk);
    this.bytesCached += chunk.bytes.length;
  }

  /**
   * Records that the user changed bytes [start, end) of `chunk` (which must
   * be cached: call it from inside `use`, or right after `get`).
   */
  markDirty(chunk: MetadataChunk<V>, start: number, end: number): void {
    if (chunk.evicted) {
      // Its bytes may be another chunk's by now (`reuseBuffers`), and the change would never be written anyway.
      throw new Error(`metadata chunk ${chunk.index} changed after it left the cache (held across an await)`);
    }
    if (start < chunk.dirtyStart) chunk.dirtyStart = start;
    if (end > chunk.dirtyEnd) chunk.dirtyEnd = end;
    chunk.generation++;
    this.version++;
  }

  /**
   * Writes the latest state of the given chunks, without any storage flush
   * or barrier. Only for `writethrough`, where everything the chunks publish
   * is durable already. Throws the first failure once every write settled.
   */
  async writeChunks(chunks: readonly MetadataChunk<V>[]): Promise<void> {
    await settleAll(chunks.map((chunk) => this.writeLatest(chunk)));
    this.trim();
  }

  /**
   * Puts every dirty chunk on disk in the cache mode's order (see the file
   * comment), and flushes the storage even when nothing is dirty (except in
   * `unsafe` mode), so it also serves as the image's flush. Serialised.
   */
  writeBack(): Promise<void> {
    const run = this.writeBackQueue.then(() => this.writeBackOnce());
    this.writeBackQueue = run.then(noop, noop);
    return run;
  }

  private async writeBackOnce(): Promise<void> {
    const sync = this.mode !== 'unsafe';
    if (this.mode === 'writethrough') {
      // Metadata in memory changed only after what it publishes was made durable: the latest state may go out.
      await this.writeChunks([...this.chunks.values()].filter((c) => c.dirty));
      await flushStorage(this.storage);
      return;
    }
    const snapshots: Snapshot<V>[] = [];
    for (const chunk of this.chunks.values()) {
      if (!chunk.dirty) continue;
      snapshots.push({
        chunk,
        generation: chunk.generation,
        start: chunk.dirtyStart,
        bytes: chunk.bytes.slice(chunk.dirtyStart, chunk.dirtyEnd),
      });
    }
    // Data first: everything the snapshots publish was written before they were taken; make it durable.
    await this.barrier();
    if (snapshots.length === 0) return;
    await settleAll(
      snapshots.map((s) =>
        this.enqueue(s.chunk, async () => {
          await writeTo(this.storage, this.offset + s.chunk.start + s.start, s.bytes);
        }),
      ),
    );
    if (sync) await flushStorage(this.storage);
    for (const s of snapshots) {
      // A byte that changed after the snapshot is not on disk yet: keep the chunk dirty.
      if (s.chunk.generation === s.generation) markClean(s.chunk);
    }
    this.trim();
  }

  /** Chunks loaded while every other was dirty or pinned may have gone over the bound: evict clean ones now. */
  private trim(): void {
    if (this.bytesCached > this.maxBytes) this.evictClean();
  }

  /** Writes a chunk's latest dirty bytes through its queue (the state is read when the write starts). */
  private writeLatest(chunk: MetadataChunk<V>): Promise<void> {
    return this.enqueue(chunk, async () => {
      if (!chunk.dirty) return; // an earlier queued write carried our bytes already
      const generation = chunk.generation;
      const start = chunk.dirtyStart;
      const bytes = chunk.bytes.slice(start, chunk.dirtyEnd);
      await writeTo(this.storage, this.offset + chunk.start + start, bytes);
      if (chunk.generation === generation) markClean(chunk);
    });
  }

  private enqueue(chunk: MetadataChunk<V>, task: () => Promise<void>): Promise<void> {
    const run = chunk.queue.then(task);
    chunk.queue = run.then(noop, noop);
    return run;
  }

  private async load(index: number): Promise<void> {
    const start = index * this.chunkBytes;
    const length = Math.min(this.chunkBytes, this.length - start);
    if (!(length > 0)) throw new RangeError(`metadata chunk ${index} lies past the region's ${this.length} bytes`);
    await this.makeRoom(length);
    const reuse = this.takeBuffer(length);
    if (reuse === undefined) this.allocations++;
    const chunk = new MetadataChunk<V>(index, start, length, this.makeView, reuse);
    try {
      // A region that ends early (past EOF) reads as zeros.
      await readZeroFilled(this.storage, this.offset + start, chunk.bytes);
    } catch (err) {
      this.giveBuffer(chunk); // never seen by any user
      throw err;
    }
    this.loads++;
    if (this.chunks.has(index)) {
      this.giveBuffer(chunk);
      return;
    }
    this.chunks.set(index, chunk);
    this.bytesCached += length;
    this.evictClean(index);
  }

  /** Evicts clean chunks (writing dirty ones back first if that is all there is) until `length` more bytes fit. */
  private async makeRoom(length: number): Promise<void> {
    while (this.bytesCached + length > this.maxBytes && this.chunks.size > 0) {
      if (this.evictOneClean()) continue;
      // Every chunk left is pinned by a waiting request: go over the bound by that much rather than wait.
      if (!this.anyEvictableDirty()) return;
      // Every unpinned chunk is dirty: write them back (the same ordered sequence as a flush), then evict.
      await this.writeBack();
      if (!this.evictOneClean()) return; // changed again meanwhile: go over the bound a little rather than spin
    }
  }

  /** A pooled buffer of exactly `length` bytes, if any (`reuseBuffers`). */
  private takeBuffer(length: number): { bytes: Uint8Array; view: V } | undefined {
    const pool = this.pool;
    if (pool === undefined) return undefined;
    for (let i = pool.length - 1; i >= 0; i--) {
      if (pool[i]!.bytes.length !== length) continue;
      const found = pool[i]!;
      pool[i] = pool[pool.length - 1]!;
      pool.pop();
      return found;
    }
    return undefined;
  }

  /** Keeps a clean chunk's buffer for a later load (`reuseBuffers`); the chunk must be out of the cache. */
  private giveBuffer(chunk: MetadataChunk<V>): void {
    const pool = this.pool;
    if (pool === undefined || chunk.dirty) return;
    chunk.evicted = true;
    if (pool.length >= REUSE_POOL_CHUNKS) pool.shift();
    pool.push({ bytes: chunk.bytes, view: chunk.view });
  }

  private anyEvictableDirty(): boolean {
    for (const chunk of this.chunks.values()) if (chunk.dirty && !this.pinned.has(chunk.index)) return true;
    return false;
  }

  private evictClean(keep?: number): void {
    while (this.bytesCached > this.maxBytes) {
      if (!this.evictOneClean(keep)) return;
    }
  }

  /**
   * Clock (second chance): in load order, a clean chunk used since the clock
   * last passed it is moved to the back unmarked, the first unused clean one
   * is evicted. Lookups then only set a flag instead of reordering the Map.
   */
  private evictOneClean(keep?: number): boolean {
    // Entries moved to the back during the loop are visited again, unmarked.
    for (const chunk of this.chunks.values()) {
      if (chunk.dirty || chunk.index === keep || this.pinned.has(chunk.index)) continue;
      if (chunk.referenced) {
        chunk.referenced = false;
        this.chunks.delete(chunk.index);
        this.chunks.set(chunk.index, chunk);
        continue;
      }
      this.chunks.delete(chunk.index);
      this.bytesCached -= chunk.bytes.length;
      this.version++;
      chunk.evicted = true;
      this.giveBuffer(chunk);
      return true;
    }
    return false;
  }
}

function markClean(chunk: MetadataChunk<unknown>): void {
  chunk.dirtyStart = Number.POSITIVE_INFINITY;
  chunk.dirtyEnd = 0;
}

function noop(): void {}

/** Waits for every promise, then throws the first failure (so no write is left running when it throws). */
async function settleAll(promises: Promise<void>[]): Promise<void> {
  const results = await Promise.allSettled(promises);
  for (const r of results) if (r.status === 'rejected') throw r.reason;
}
