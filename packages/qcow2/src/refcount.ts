/**
 * The in-image refcount structure of a writable qcow2 image: the refcount
 * table (in memory, at most 8 MiB, QEMU's limit) and the refcount blocks
 * (through a bounded MetadataCache, one chunk per cluster), and the host
 * cluster allocator on top of them, as QEMU's qcow2-refcount.c:
 *
 * - first fit from a free-cluster hint (QEMU's free_cluster_index);
 * - a missing refcount block is placed at the first free cluster of the range
 *   it covers, so it describes itself;
 * - past the table's reach the table grows: new blocks and a larger table are
 *   written past the end, made durable, the header switched in one write, and
 *   the old table freed;
 * - compressed payloads are packed into shared clusters (QEMU's
 *   qcow2_alloc_bytes): a cluster's refcount counts the descriptors touching it;
 * - frees are deferred: a decrement is applied only once the metadata that
 *   stopped using the cluster is durable (`takeFrees` / `applyFrees`), so a
 *   crash can leak a cluster but never free one still referenced.
 *
 * Every number read from the file is checked before use; a bad one is a typed
 * `BlockError` (`invalid-header`, "qcow2 metadata is corrupt") and nothing is
 * changed on its account.
 */
import { BlockError, MetadataCache, flushStorage, writeTo, type CacheMode, type Storage } from '@blk/core/portable';
import { MAX_REFTABLE_BYTES } from './header.js';
import { maxRefcount, readRefcount, refcountsPerBlock, writeRefcount } from './layout.js';

/** A refcount block held by the cache. */
type RefcountChunk = Parameters<MetadataCache<undefined>['markDirty']>[0];

/**
 * Serialises async sections (QEMU's s->lock). `idle` says that no section is running: a caller may
 * then do a synchronous step in place of a section (no await, so nothing can interleave with it),
 * which is how the write path's common case avoids a promise per step.
 */
export class Mutex {
  private tail: Promise<unknown> = Promise.resolve();
  /** A section started and has not finished (set until the step after it settles). */
  private running = false;
  private readonly release = (): void => {
    this.running = false;
  };

  run<T>(fn: () => T | Promise<T>): Promise<T> {
    const run = this.tail.then(() => {
      this.running = true;
      return fn();
    });
    this.tail = run.then(this.release, this.release);
    return run;
  }

  /**
   * No section is running (sections may wait: they have not started, so they see what a synchronous
   * step does as if it had run before them).
   */
  get idle(): boolean {
    return !this.running;
  }
}

/** Host offsets are at most 2^56 (bits 9..55 of an entry). */
const MAX_HOST_CLUSTER_BYTES = 2 ** 56;

export interface RefcountOptions {
  storage: Storage;
  clusterBits: number;
  refcountOrder: number;
  tableOffset: number;
  tableClusters: number;
  /** The table's bytes as read from the file (tableClusters clusters). */
  table: Uint8Array;
  mode: CacheMode;
  /** Bytes of refcount blocks to keep in memory. */
  cacheBytes: number;
  /** The file's length when opened: clusters past it are free unless a refcount says otherwise. */
  fileSize: number;
  /** Writes header bytes at `offset` (the image serialises header writes). */
  writeHeader: (offset: number, bytes: Uint8Array) => Promise<void>;
  /** True for a host cluster that holds metadata the refcounts do not show as free (cluster 0, the L1 table, L2 tables). */
  isMetadata: (cluster: number) => boolean;
}

export class Refcounts {
  readonly cache: MetadataCache<undefined>;
  private readonly storage: Storage;
  private readonly cs: number;
  private readonly order: number;
  private readonly perBlock: number;
  private readonly max: number;
  private table: Uint8Array;
  private tableOffset: number;
  private tableClusters: number;
  /** Dirty byte range of the in-memory table not yet written. */
  private dirtyLo = Number.POSITIVE_INFINITY;
  private dirtyHi = 0;
  /** Clusters holding refcount blocks (for the overlap check). */
  private readonly blocks = new Set<number>();
  /** Lowest cluster that may be free. */
  private hint = 0;
  /** Byte offset where the next compressed payload may go (0: start a new cluster). */
  private freeByte = 0;
  /** Decrements waiting for the metadata that dropped the references to be durable. */
  private pending: number[] = [];
  /** Serialises table write-back with table growth. */
  private readonly tableLock = new Mutex();
  /** One past the highest cluster in use (grows as the allocator hands clusters out). */
  endCluster: number;

  constructor(private readonly o: RefcountOptions) {
    this.storage = o.storage;
    this.cs = 2 ** o.clusterBits;
    this.order = o.refcountOrder;
    this.perBlock = refcountsPerBlock(o.clusterBits, o.refcountOrder);
    this.max = maxRefcount(o.refcountOrder);
    this.table = o.table;
    this.tableOffset = o.tableOffset;
    this.tableClusters = o.tableClusters;
    this.endCluster = Math.ceil(o.fileSize / this.cs);
    this.cache = new MetadataCache<undefined>({
      storage: o.storage,
      offset: 0,
      length: MAX_HOST_CLUSTER_BYTES,
      chunkBytes: this.cs,
      maxBytes: Math.max(o.cacheBytes, 4 * this.cs),
      mode: o.mode === 'unsafe' ? 'unsafe' : 'writeback',
    });
    for (let k = 0; k < this.entries; k++) {
      const off = this.rawEntry(k);
      if (off !== 0) this.blocks.add(off / this.cs);
    }
  }

  private get entries(): number {
    return (this.tableClusters * this.cs) / 8;
  }

  private corrupt(message: string, offset?: number): BlockError {
    return new BlockError('invalid-header', `qcow2 metadata is corrupt: ${message}`, {
      path: this.storage.path,
      driver: 'qcow2',
      field: 'refcount_table',
      ...(offset !== undefined ? { offset } : {}),
    });
  }

  /** Table entry k, checked: 0 or a cluster-aligned offset below 2^56 with no reserved bits. */
  private rawEntry(k: number): number {
    const dv = new DataView(this.table.buffer, this.table.byteOffset + k * 8, 8);
    const hi = dv.getUint32(0);
    const lo = dv.getUint32(4);
    if (hi === 0 && lo === 0) return 0;
    if ((lo & 0x1ff) !== 0 || hi >= 0x01000000) {
      throw this.corrupt(
        `refcount table entry ${k} has reserved bits set (0x${hi.toString(16)}${lo.toString(16).padStart(8, '0')})`,
      );
    }
    const off = hi * 2 ** 32 + lo;
    if (off % this.cs !== 0)
      throw this.corrupt(`refcount block offset 0x${off.toString(16)} unaligned (entry ${k})`, off);
    return off;
  }

  private setEntry(k: number, offset: number): void {
    const dv = new DataView(this.table.buffer, this.table.byteOffset + k * 8, 8);
    dv.setUint32(0, Math.floor(offset / 2 ** 32));
    dv.setUint32(4, offset >>> 0);
    this.dirtyLo = Math.min(this.dirtyLo, k * 8);
    this.dirtyHi = Math.max(this.dirtyHi, k * 8 + 8);
  }

  /** Whether cluster c holds the refcount table or a refcount block. */
  isRefcountMetadata(c: number): boolean {
    const t0 = this.tableOffset / this.cs;
    return (c >= t0 && c < t0 + this.tableClusters) || this.blocks.has(c);
  }

  /** The refcount of host cluster c (0 past the table's reach or where no block exists). */
  async get(c: number): Promise<number> {
    const k = Math.floor(c / this.perBlock);
    if (k >= this.entries) return 0;
    const off = this.rawEntry(k);
    if (off === 0) return 0;
    return this.cache.use(off / this.cs, (chunk) => readRefcount(chunk.bytes, c % this.perBlock, this.order));
  }

  /** Adds `delta` to the refcount of cluster c, which must have a refcount block. */
  async add(c: number, delta: number): Promise<number> {
    const k = Math.floor(c / this.perBlock);
    const off = k < this.entries ? this.rawEntry(k) : 0;
    if (off === 0) {
      throw this.corrupt(`cluster ${c} has no refcount block, but its refcount was to change by ${delta}`, c * this.cs);
    }
    return this.cache.use(off / this.cs, (chunk) => {
      const i = c % this.perBlock;
      const now = readRefcount(chunk.bytes, i, this.order);
      if (this.order === 6 && now + Math.abs(delta) > Number.MAX_SAFE_INTEGER) return this.add64(chunk, i, c, delta);
      const next = now + delta;
      if (next < 0) throw this.corrupt(`refcount of cluster ${c} would drop below zero`, c * this.cs);
      if (next > this.max) {
        throw new BlockError('not-supported', `refcount of cluster ${c} would exceed ${this.max}`, {
          path: this.storage.path,
          driver: 'qcow2',
          offset: c * this.cs,
          code: 'ERANGE',
        });
      }
      writeRefcount(chunk.bytes, i, this.order, next);
      const byte = Math.floor((i * 2 ** this.order) / 8);
      this.cache.markDirty(chunk, byte, byte + Math.max(1, 2 ** this.order / 8));
      if (next === 0 && c < this.hint) this.hint = c;
      return next;
    });
  }

  /**
   * `add` on a 64-bit refcount beyond what a number holds exactly (QEMU accepts any value up to
   * 2^64 - 1, and iotest 112 writes through a cluster whose refcount has its MSb set): the sum is
   * taken in bigint. The result comes back as a number >= 2^53 - |delta|, never mistaken for 0 or 1.
   */
  private add64(chunk: RefcountChunk, i: number, c: number, delta: number): number {
    const dv = new DataView(chunk.bytes.buffer, chunk.bytes.byteOffset + 8 * i, 8);
    const next = dv.getBigUint64(0) + BigInt(delta);
    if (next < 0n) throw this.corrupt(`refcount of cluster ${c} would drop below zero`, c * this.cs);
    if (next > 0xffff_ffff_ffff_ffffn) {
      throw new BlockError('not-supported', `refcount of cluster ${c} would exceed 2^64 - 1`, {
        path: this.storage.path,
        driver: 'qcow2',
        offset: c * this.cs,
        code: 'ERANGE',
      });
    }
    dv.setBigUint64(0, next);
    this.cache.markDirty(chunk, 8 * i, 8 * i + 8);
    return Number(next);
  }

  /** The first cluster at or after `from` whose refcount is 0. */
  private async nextFree(from: number): Promise<number> {
    let c = from;
    for (;;) {
      const k = Math.floor(c / this.perBlock);
      if (k >= this.entries) return c;
      const off = this.rawEntry(k);
      if (off === 0) return c;
      const found = await this.cache.use(off / this.cs, (chunk) => {
        const stop = (k + 1) * this.perBlock;
        for (let x = c; x < stop; x++) {
          if (readRefcount(chunk.bytes, x % this.perBlock, this.order) === 0) return x;
        }
        return -1;
      });
      if (found >= 0) {
        if (found === 0 || this.o.isMetadata(found) || this.isRefcountMetadata(found)) {
          throw this.corrupt(`cluster ${found} holds metadata but its refcount is 0`, found * this.cs);
        }
        return found;
      }
      c = (k + 1) * this.perBlock;
    }
  }

  /** Allocates one host cluster (refcount 1) and returns its index. The caller serialises allocations. */
  async allocate(): Promise<number> {
    for (;;) {
      const c = await this.nextFree(this.hint);
      if ((c + 1) * this.cs > MAX_HOST_CLUSTER_BYTES) {
        throw new BlockError('not-supported', 'qcow2 host offsets are limited to 2^56 bytes', {
          path: this.storage.path,
          driver: 'qcow2',
          code: 'ENOSPC',
        });
      }
      const k = Math.floor(c / this.perBlock);
      if (k >= this.entries) {
        await this.grow(c);
        continue;
      }
      if (this.rawEntry(k) === 0) {
        // No block covers c: one goes at c and describes itself.
        await this.cache.use(c, (chunk) => {
          chunk.bytes.fill(0);
          writeRefcount(chunk.bytes, c % this.perBlock, this.order, 1);
          this.cache.markDirty(chunk, 0, chunk.bytes.length);
        });
        this.setEntry(k, c * this.cs);
        this.blocks.add(c);
        this.used(c);
        continue;
      }
      await this.add(c, 1);
      this.used(c);
      return c;
    }
  }

  /**
   * `allocate` without waiting: the cluster (refcount now 1) when the next free one lies in the
   * refcount block that covers the free-cluster hint and that block is cached or can be read
   * synchronously (`MetadataCache.loadNow`); -1, having changed nothing, when it takes more (an
   * asynchronous read, a range with no block yet, a table to grow, a block full from the hint on),
   * or when `accept` refuses the cluster: the caller then takes the asynchronous path. The caller
   * serialises allocations (it runs inside or instead of the image's metadata lock, without awaiting).
   */
  allocateNow(accept?: (cluster: number) => boolean): number {
    const from = this.hint;
    const per = this.perBlock;
    const k = Math.floor(from / per);
    if (k >= this.entries) return -1;
    const off = this.rawEntry(k);
    if (off === 0) return -1;
    const chunk = this.cache.loadNow(off / this.cs);
    if (chunk === undefined) return -1;
    const bytes = chunk.bytes;
    const order = this.order;
    const first = k * per;
    const stop = first + per;
    let c = from;
    while (c < stop && readRefcount(bytes, c - first, order) !== 0) c++;
    if (c === stop || (c + 1) * this.cs > MAX_HOST_CLUSTER_BYTES) return -1;
    if (c === 0 || this.o.isMetadata(c) || this.isRefcountMetadata(c)) {
      throw this.corrupt(`cluster ${c} holds metadata but its refcount is 0`, c * this.cs);
    }
    if (accept !== undefined && !accept(c)) return -1;
    const i = c - first;
    writeRefcount(bytes, i, order, 1);
    const byte = Math.floor((i * 2 ** order) / 8);
    this.cache.markDirty(chunk, byte, byte + Math.max(1, 2 ** order / 8));
    this.used(c);
    return c;
  }

  /**
   * Allocates `n` contiguous clusters (refcount 1 each) and returns the first: clusters are taken
   * first fit one by one; where the run breaks (a refcount block placed itself in the way, or a
   * used cluster), the clusters taken so far are given back once the run is found.
   */
  async allocateRun(n: number): Promise<number> {
    const strays: number[] = [];
    let first = await this.allocate();
    let last = first;
    while (last - first + 1 < n) {
      const c = await this.allocate();
      if (c !== last + 1) {
        for (let x = first; x <= last; x++) strays.push(x);
        first = c;
      }
      last = c;
    }
    // Never referenced by anything: their refcounts drop back at once.
    for (const c of strays) await this.add(c, -1);
    return first;
  }

  private used(c: number): void {
    this.hint = c + 1;
    if (c + 1 > this.endCluster) this.endCluster = c + 1;
  }

  /**
   * Room for a compressed payload of `n` bytes (at most a cluster): packed
   * after the previous payload when it fits in that cluster (its refcount
   * grows by one per descriptor), else at the start of a new cluster.
   */
  async allocBytes(n: number): Promise<number> {
    const cs = this.cs;
    if (!(n > 0 && n <= cs)) throw new RangeError(`compressed payload of ${n} bytes`);
    const at = this.freeByte;
    if (at !== 0 && (at % cs) + n <= cs) {
      const c = Math.floor(at / cs);
      if ((await this.get(c)) < this.max) {
        await this.add(c, 1);
        this.freeByte = (at + n) % cs === 0 ? 0 : at + n;
        return at;
      }
    }
    const c = await this.allocate();
    this.freeByte = n === cs ? 0 : c * cs + n;
    return c * cs;
  }

  /** Schedules one decrement of cluster c, applied by `applyFrees` once what dropped the reference is durable. */
  free(c: number): void {
    this.pending.push(c);
  }

  /** The scheduled decrements so far (the caller makes their metadata durable, then applies them). */
  takeFrees(): number[] {
    const taken = this.pending;
    this.pending = [];
    return taken;
  }

  /** Puts back decrements a failed flush took (they apply at the next one). */
  returnFrees(clusters: readonly number[]): void {
    this.pending.unshift(...clusters);
  }

  async applyFrees(clusters: readonly number[]): Promise<void> {
    for (const c of clusters) {
      const left = await this.add(c, -1);
      if (left === 0 && this.freeByte !== 0 && Math.floor(this.freeByte / this.cs) === c) this.freeByte = 0;
    }
  }

  /** Puts refcount blocks, then the table entries that point at new ones, on disk. */
  writeBack(): Promise<void> {
    return this.tableLock.run(async () => {
      await this.cache.writeBack();
      if (this.dirtyHi > this.dirtyLo) {
        const lo = this.dirtyLo;
        const hi = this.dirtyHi;
        this.dirtyLo = Number.POSITIVE_INFINITY;
        this.dirtyHi = 0;
        try {
          await writeTo(this.storage, this.tableOffset + lo, this.table.slice(lo, hi));
        } catch (err) {
          this.dirtyLo = Math.min(this.dirtyLo, lo);
          this.dirtyHi = Math.max(this.dirtyHi, hi);
          throw err;
        }
        if (this.o.mode !== 'unsafe') await flushStorage(this.storage);
      }
    });
  }

  /**
   * Grows the table so that it reaches cluster `a` (the first free cluster,
   * past its reach) and a new area there: refcount blocks covering the area,
   * then the new table; written and flushed, the header switched in one write
   * and flushed, then the old table's clusters freed.
   */
  private grow(a: number): Promise<void> {
    return this.tableLock.run(async () => {
      const cs = this.cs;
      const per = this.perBlock;
      const oldEntries = this.entries;
      const oldT = this.tableClusters;
      const firstK = Math.floor(a / per);
      let b = 0;
      let t = oldT;
      for (;;) {
        const kEnd = Math.ceil((a + b + t) / per);
        const entries = Math.max(kEnd + 1, Math.ceil(oldEntries * 1.5));
        const t2 = Math.max(oldT + 1, Math.ceil((entries * 8) / cs));
        const b2 = kEnd - firstK;
        if (t2 === t && b2 === b) break;
        t = Math.max(t, t2);
        b = Math.max(b, b2);
      }
      if (t * cs > MAX_REFTABLE_BYTES) {
        throw new BlockError('not-supported', `the refcount table would exceed ${MAX_REFTABLE_BYTES} bytes`, {
          path: this.storage.path,
          driver: 'qcow2',
          field: 'refcount_table_clusters',
          code: 'EFBIG',
        });
      }
      // The blocks the old table names, with every change so far, go first.
      await this.cache.writeBack();
      const areaEnd = a + b + t;
      for (let j = 0; j < b; j++) {
        const block = new Uint8Array(cs);
        const lo = (firstK + j) * per;
        for (let c = Math.max(a, lo); c < Math.min(areaEnd, lo + per); c++) writeRefcount(block, c - lo, this.order, 1);
        await writeTo(this.storage, (a + j) * cs, block);
      }
      const table = new Uint8Array(t * cs);
      table.set(this.table.subarray(0, oldEntries * 8));
      const dv = new DataView(table.buffer);
      for (let j = 0; j < b; j++) {
        const off = (a + j) * cs;
        dv.setUint32((firstK + j) * 8, Math.floor(off / 2 ** 32));
        dv.setUint32((firstK + j) * 8 + 4, off >>> 0);
      }
      const tableAt = (a + b) * cs;
      await writeTo(this.storage, tableAt, table);
      await flushStorage(this.storage);
      const fields = new Uint8Array(12);
      const hv = new DataView(fields.buffer);
      hv.setUint32(0, Math.floor(tableAt / 2 ** 32));
      hv.setUint32(4, tableAt >>> 0);
      hv.setUint32(8, t);
      await this.o.writeHeader(48, fields);
      await flushStorage(this.storage);
      const oldAt = this.tableOffset / cs;
      this.table = table;
      this.tableOffset = tableAt;
      this.tableClusters = t;
      this.dirtyLo = Number.POSITIVE_INFINITY;
      this.dirtyHi = 0;
      for (let j = 0; j < b; j++) this.blocks.add(a + j);
      this.used(areaEnd - 1);
      this.hint = Math.min(this.hint, oldAt);
      // The header names the new table durably: the old one's clusters are free now.
      for (let c = oldAt; c < oldAt + oldT; c++) await this.add(c, -1);
    });
  }

  /** Where the table is now (for tools and tests). */
  get tableLocation(): { offset: number; clusters: number } {
    return { offset: this.tableOffset, clusters: this.tableClusters };
  }
}
