/**
 * An open qcow2 image: L1 in memory, L2 tables through a bounded
 * MetadataCache (one chunk per cluster), the four L2 entry kinds, deflate
 * through the portable DecompressionStream; writable opens add the refcount
 * engine (`refcount.ts`) and the write path below.
 *
 * Writing, as QEMU's qcow2 driver (see docs/interop/qcow2.txt):
 * - a write into a cluster whose L2 entry is normal with the COPIED bit
 *   (refcount 1) goes in place; anything else gets a new cluster (refcount 1,
 *   COPIED), filled around the written part from the old cluster, the
 *   compressed payload, the layer below (`below`) or zeros, and the old host
 *   cluster is freed (deferred until the new L2 entry is durable);
 * - the core serialises writes per cluster (`limits.serialAlignment`), and a
 *   mutex (QEMU's s->lock) covers the metadata steps; data I/O runs outside it;
 * - ordering, in writeback mode: data, then refcount blocks (and the table
 *   entries naming new blocks), then L2 tables, then the L1 table and the
 *   header; each step behind a storage flush. Metadata is held in memory
 *   until `flush` (or a cache eviction, which follows the same order), so a
 *   crash leaves old or new sectors and at worst leaked clusters.
 * - lazy_refcounts: the dirty bit is set (durably) before the first change and
 *   cleared on a clean close, as QEMU does; meanwhile a flush writes data, L2
 *   and L1 but leaves the refcount blocks in memory (written when an L2 table
 *   is allocated, on eviction and at close): a crash leaves a dirty image whose
 *   repair (any writable open, or qemu-img check -r) rebuilds them.
 */
import {
  BlockError,
  MetadataCache,
  type MetadataChunk,
  flushStorage,
  readZeroFilled,
  writeTo,
  type BackingReference,
  type BlockStatus,
  type CacheMode,
  type DriverCapabilities,
  type DriverImage,
  type ReadBelow,
  type Storage,
  type BlockDriver,
  type WriteFlags,
  type BackingSpec,
  type ResizeOptions,
  supportedPreallocation,
} from '@blk/core/portable';
import { inflateCluster, inflateClusterSync } from './inflate.js';
import { zstdCluster } from './zstd.js';
import { ExtendedL2Reader } from './subclusters.js';
import {
  COMPAT_LAZY_REFCOUNTS,
  EXT_BACKING_FORMAT,
  MAX_BACKING_NAME,
  MAX_L1_BYTES,
  INCOMPAT_CORRUPT,
  INCOMPAT_DIRTY,
  INCOMPAT_EXTENDED_L2,
  type Qcow2Header,
} from './header.js';
import { Mutex, Refcounts } from './refcount.js';
import { compressedDescriptorBits, l1EntriesFor, OFLAG_COMPRESSED } from './layout.js';
import { deflateCluster } from './deflate.js';
import type { SnapshotEngine } from './snapshot-write.js';

export const SECTOR = 512;
/** Default L2 cache bound, QEMU's default l2-cache-size (1 MiB), at least four tables. */
const L2_CACHE_BYTES = 1024 * 1024;

/** What one guest cluster maps to. */
export type ClusterKind = 'unallocated' | 'normal' | 'zero' | 'zero-alloc' | 'compressed';

export interface ClusterMapping {
  kind: ClusterKind;
  /** Host offset of the cluster (normal, zero-alloc) or of the compressed payload. */
  host: number;
  /** Compressed payload length in bytes. */
  csize: number;
}

/** The first metadata step of a write into one guest cluster (`planNow`, `writeCluster`). */
interface WritePlan {
  /** The L2 table holding the cluster's entry. */
  l2: number;
  /** What the entry maps now. */
  m: ClusterMapping;
  /** Where the data goes. */
  host: number;
  /** A cluster allocated for this write (its refcount is 1; freed again if the write fails). */
  fresh: boolean;
  /** The cluster is the guest's already (normal, COPIED): the piece goes in place, no metadata changes. */
  inPlace: boolean;
  /** Fresh and past every cluster in use so far: nothing ever wrote it, so it reads as zeros. */
  untouched: boolean;
}

const UNALLOCATED: ClusterMapping = Object.freeze({ kind: 'unallocated', host: 0, csize: 0 });
const TWO32 = 2 ** 32;

export interface Qcow2WriteOptions {
  mode: CacheMode;
  /** The refcount table's bytes (refcount_table_clusters clusters). */
  refcountTable: Uint8Array;
  /** QEMU's `lazy-refcounts` open option: overrides the header's lazy_refcounts bit for this open. */
  lazyRefcounts?: boolean | undefined;
}

const COPIED_HI = 0x80000000;
const ZERO_LO = 1;
/** Refcount blocks kept in memory (QEMU's default refcount cache is a quarter of the L2 cache). */
const REFCOUNT_CACHE_BYTES = 256 * 1024;

export class Qcow2Image implements DriverImage {
  readonly requestAlignment = SECTOR;
  size: number;
  backing?: BackingReference;
  readonly capabilities: DriverCapabilities;
  private readonly clusterSize: number;
  private readonly l2Entries: number;
  /** Bytes per L2 entry: 8, or 16 with extended L2 (the descriptor, then the subcluster bitmap). */
  private readonly entryBytes: number;
  private readonly l2Cache: MetadataCache<DataView>;
  private readonly where: { path: string; driver: 'qcow2' };
  /** One view of the L1 table (a DataView per lookup cost 5-6% of a random 4 KiB read). */
  private l1View: DataView;
  /** The last decompressed cluster, as QEMU keeps one (sequential small reads decompress once). */
  private lastCompressed: { host: number; data: Uint8Array } | undefined;
  private fileSize: number;
  /** Writable opens only (replaced when amend changes the refcount width: `reloadRefcounts`). */
  private refcounts: Refcounts | undefined;
  private readonly mode: CacheMode;
  /** QEMU's s->lock: the metadata steps of writes, zeroing and discards. */
  private readonly meta = new Mutex();
  private readonly flushLock = new Mutex();
  private readonly headerLock = new Mutex();
  /** Dirty byte range of the in-memory L1 table. */
  private l1DirtyLo = Number.POSITIVE_INFINITY;
  private l1DirtyHi = 0;
  /** Host clusters holding the active L2 tables (for the allocator's overlap check). */
  private readonly l2Tables = new Set<number>();
  /** Set once the image was prepared for its first change (dirty bit, autoclear bits). */
  private prepared: Promise<void> | undefined;
  /** `prepared` has completed: writes may take the synchronous path (`planNow`). */
  private ready = false;
  /** We set the dirty bit (lazy refcounts) and clear it on a clean close. */
  private markedDirty = false;
  /** Lazy refcounts in use: the header's bit, unless the `lazy-refcounts` open option said otherwise. */
  private readonly lazyRefcounts: boolean;
  /** Reads and block status of images with extended L2 entries (subclusters.ts). */
  private readonly extended: ExtendedL2Reader | undefined;

  constructor(
    readonly driver: BlockDriver,
    private readonly storage: Storage,
    readonly header: Qcow2Header,
    private l1: Uint8Array,
    fileSize: number,
    backing: BackingReference | undefined,
    writable?: Qcow2WriteOptions,
  ) {
    this.fileSize = fileSize;
    this.size = header.size;
    this.clusterSize = header.clusterSize;
    const extendedL2 = (header.incompatibleFeatures & BigInt(INCOMPAT_EXTENDED_L2)) !== 0n;
    this.entryBytes = extendedL2 ? 16 : 8;
    this.l2Entries = header.clusterSize / this.entryBytes;
    this.where = { path: storage.path, driver: 'qcow2' };
    this.l1View = new DataView(l1.buffer, l1.byteOffset, l1.byteLength);
    if (backing) this.backing = backing;
    this.mode = writable?.mode ?? 'writeback';
    this.lazyRefcounts = writable?.lazyRefcounts ?? (header.compatibleFeatures & BigInt(COMPAT_LAZY_REFCOUNTS)) !== 0n;
    const cs = this.clusterSize;
    this.capabilities = {
      blockStatus: true,
      // Compressed writes deflate: not into a zstd image (compression_type=zstd).
      compress: writable !== undefined && header.compressionType === 0,
      // QEMU's discard: v3 leaves zero clusters (never the backing file's data), v2 unallocated ones.
      ...(header.version === 3 || !backing ? { discard: 'zero' as const } : { discard: 'backing' as const }),
      limits: { clusterSize: cs, serialAlignment: cs, zeroAlignment: cs },
    };
    this.l2Cache = new MetadataCache<DataView>({
      storage,
      offset: 0,
      length: 2 ** 56,
      chunkBytes: cs,
      maxBytes: Math.max(L2_CACHE_BYTES, 4 * cs),
      mode: this.mode === 'unsafe' ? 'unsafe' : 'writeback',
      // L2 entries publish data and refcounts: those go first (QEMU's cache dependency); with lazy
      // refcounts in effect (the dirty bit set) only the data (qcow2_need_accurate_refcounts).
      barrier: () => (this.refcounts && !this.markedDirty ? this.refcounts.writeBack() : flushStorage(storage)),
      view: (bytes) => new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength),
      // A map walks every L2 table once: reuse evicted tables' buffers (every use of a chunk here is synchronous).
      reuseBuffers: true,
    });
    if (writable) {
      for (let i = 0; i < header.l1Size; i++) {
        const l2 = this.l2Offset(i);
        if (l2 !== 0) this.l2Tables.add(l2 / cs);
      }
      this.refcounts = this.openRefcounts(writable.refcountTable, fileSize);
    }
    if (extendedL2) this.extended = this.extendedReader();
  }

  /** The allocator over the refcount structures the header names (`table`: the refcount table's bytes). */
  private openRefcounts(table: Uint8Array, fileSize: number): Refcounts {
    const header = this.header;
    const cs = this.clusterSize;
    return new Refcounts({
      storage: this.storage,
      clusterBits: header.clusterBits,
      refcountOrder: header.refcountOrder,
      tableOffset: header.refcountTableOffset,
      tableClusters: header.refcountTableClusters,
      table,
      mode: this.mode,
      cacheBytes: REFCOUNT_CACHE_BYTES,
      fileSize,
      writeHeader: (offset, bytes) => this.writeHeader(offset, bytes),
      isMetadata: (c) =>
        c === 0
        || (c >= header.l1TableOffset / cs && c < Math.ceil((header.l1TableOffset + header.l1Size * 8) / cs))
        || this.l2Tables.has(c),
    });
  }

  /**
   * Before amend rebuilds the refcount structures from the file (refcount-order.ts): every change
   * held in memory (L2 tables, L1, refcount blocks, deferred frees) is written out.
   */
  async writeBackAll(): Promise<void> {
    await this.flush();
    await this.refcounts?.writeBack();
  }

  /** After amend switched the header to new refcount structures: the allocator works on those. */
  async reloadRefcounts(): Promise<void> {
    if (!this.refcounts) return;
    const table = new Uint8Array(this.header.refcountTableClusters * this.clusterSize);
    await readZeroFilled(this.storage, this.header.refcountTableOffset, table);
    this.refcounts = this.openRefcounts(table, await this.storage.size());
  }

  private extendedReader(): ExtendedL2Reader {
    return new ExtendedL2Reader({
      storage: this.storage,
      clusterSize: this.clusterSize,
      l2Entries: this.l2Entries,
      l2Offset: (l1Index) => this.l2Offset(l1Index),
      useL2: (offset, fn) => this.l2Cache.use(offset / this.clusterSize, (chunk) => fn(chunk.view)),
      decode: (hi, lo, cluster) => this.decode(hi, lo, cluster),
      decompress: (m, cluster) => this.decompress(m, cluster),
      corrupt: (message, offset) => this.corrupt(message, offset),
    });
  }

  private corrupt(message: string, offset?: number): BlockError {
    return new BlockError('invalid-header', `qcow2 metadata is corrupt: ${message}`, {
      ...this.where,
      field: 'l2_entry',
      ...(offset !== undefined ? { offset } : {}),
    });
  }

  /** The L2 table offset for guest cluster `cluster` (0 when none). */
  private l2Offset(l1Index: number): number {
    if (l1Index * 8 >= this.l1.length) return 0; // the L1 table holds header.l1Size entries
    let v = this.l1View;
    if (v.buffer !== this.l1.buffer || v.byteOffset !== this.l1.byteOffset || v.byteLength !== this.l1.byteLength) {
      v = this.l1View = new DataView(this.l1.buffer, this.l1.byteOffset, this.l1.byteLength); // the writer grew L1
    }
    const hi = v.getUint32(l1Index * 8);
    const lo = v.getUint32(l1Index * 8 + 4);
    const hiOff = hi & 0x00ffffff;
    const offset = hiOff * TWO32 + (lo >>> 9) * 512;
    if (offset === 0) return 0;
    if (hiOff >= 2 ** 21) throw this.corrupt(`L2 table offset ${offset} is too large (L1 index ${l1Index})`);
    if (offset % this.clusterSize !== 0)
      throw this.corrupt(
        `L2 table offset 0x${offset.toString(16)} unaligned (L1 index 0x${l1Index.toString(16)})`,
        offset,
      );
    if (offset >= this.fileSize) {
      throw new BlockError('truncated', `L2 table at ${offset} (L1 index ${l1Index}) lies past the end of the file`, {
        ...this.where,
        field: 'l1_table',
        offset,
      });
    }
    return offset;
  }

  /** Decodes one L2 entry (hi, lo words) of guest cluster `cluster`. */
  private decode(hi: number, lo: number, cluster: number): ClusterMapping {
    if ((hi & 0x40000000) !== 0) {
      // Compressed: x = 62 - (cluster_bits - 8) offset bits, then (cluster_bits - 8) bits of extra sectors.
      const x = 62 - (this.header.clusterBits - 8);
      const big = (BigInt(hi >>> 0) << 32n) | BigInt(lo >>> 0);
      const coffset = Number(big & ((1n << BigInt(x)) - 1n));
      const nbSectors = Number((big >> BigInt(x)) & ((1n << BigInt(this.header.clusterBits - 8)) - 1n)) + 1;
      const csize = nbSectors * SECTOR - (coffset % SECTOR);
      if (coffset === 0) throw this.corrupt(`compressed cluster at offset 0 (guest cluster ${cluster})`);
      return { kind: 'compressed', host: coffset, csize };
    }
    const hiOff = hi & 0x00ffffff;
    const offset = hiOff * TWO32 + (lo >>> 9) * 512;
    const zeroFlag = (lo & 1) !== 0;
    if ((lo & 0x1fe) !== 0 || (hi & 0x3f000000) !== 0) {
      throw this.corrupt(`Invalid cluster entry found (guest cluster ${cluster})`);
    }
    if (zeroFlag) {
      if (this.header.version < 3)
        throw this.corrupt(`Zero cluster entry found in pre-v3 image (guest cluster ${cluster})`);
      if (offset === 0) return { kind: 'zero', host: 0, csize: 0 };
    } else if (offset === 0) {
      return UNALLOCATED;
    }
    if (hiOff >= 2 ** 21) throw this.corrupt(`cluster offset too large (guest cluster ${cluster})`);
    if (offset % this.clusterSize !== 0) {
      throw this.corrupt(
        `Cluster allocation offset 0x${offset.toString(16)} unaligned (guest cluster ${cluster})`,
        offset,
      );
    }
    return { kind: zeroFlag ? 'zero-alloc' : 'normal', host: offset, csize: 0 };
  }

  /**
   * The mappings of guest clusters [first, first + count) that share one L2
   * table (count is cut at the table's end). Calls `each` per cluster.
   */
  private async withL2<T>(
    cluster: number,
    fn: (lookup: (c: number) => ClusterMapping, stop: number, zeroUntil: (c: number, limit: number) => number) => T,
  ): Promise<T> {
    const l1Index = Math.floor(cluster / this.l2Entries);
    const stop = (l1Index + 1) * this.l2Entries;
    const l2 = this.l2Offset(l1Index);
    if (l2 === 0)
      return fn(
        () => UNALLOCATED,
        stop,
        (_c, limit) => limit,
      );
    return this.l2Cache.use(l2 / this.clusterSize, (chunk) => {
      const dv = chunk.view;
      const entries = this.l2Entries;
      const stride = this.entryBytes;
      return fn(
        (c) => {
          const i = (c % entries) * stride;
          return this.decode(dv.getUint32(i), dv.getUint32(i + 4), c);
        },
        stop,
        // The first cluster in [c, limit) whose entry is not all zero bits (integer steps only: no decode, no
        // byte offsets past 2^31 that would box a number per entry and churn the heap on a scan of a sparse image).
        (c, limit) => {
          let i = (c % entries) * stride;
          while (c < limit && dv.getUint32(i) === 0 && dv.getUint32(i + 4) === 0) {
            c++;
            i += stride;
          }
          return c;
        },
      );
    });
  }

  /** Mapping of one guest cluster (for tests and tools). */
  mapping(cluster: number): Promise<ClusterMapping> {
    return this.withL2(cluster, (lookup) => lookup(cluster));
  }

  /** The mapping of guest cluster `c` in the L2 table `dv` (undefined: no table, unallocated). */
  private mappingIn(dv: DataView | undefined, c: number): ClusterMapping {
    if (dv === undefined) return UNALLOCATED;
    const i = (c % this.l2Entries) * this.entryBytes;
    return this.decode(dv.getUint32(i), dv.getUint32(i + 4), c);
  }

  /**
   * Guest clusters from `cluster` that continue its run (one kind, contiguous on the host), up to
   * `end` and the table's `stop`: a run of host-contiguous clusters is read with one request.
   * `dv` is the cluster's L2 table (undefined when it has none).
   */
  private runFrom(
    dv: DataView | undefined,
    stop: number,
    cluster: number,
    end: number,
  ): { first: ClusterMapping; runEnd: number } {
    const cs = this.clusterSize;
    const first = this.mappingIn(dv, cluster);
    let runEnd = Math.min(end, (cluster + 1) * cs);
    if (first.kind !== 'compressed') {
      for (let c = cluster + 1; c < stop && runEnd < end; c++) {
        if (!sameRun(first, this.mappingIn(dv, c), (c - cluster) * cs)) break;
        runEnd = Math.min(end, (c + 1) * cs);
      }
    }
    return { first, runEnd };
  }

  /** The L2 table of guest cluster `cluster` as a view (undefined when it has none), loaded through the cache. */
  private withL2View<T>(cluster: number, fn: (dv: DataView | undefined, stop: number) => T): Promise<T> {
    const l1Index = Math.floor(cluster / this.l2Entries);
    const stop = (l1Index + 1) * this.l2Entries;
    const l2 = this.l2Offset(l1Index);
    if (l2 === 0) return Promise.resolve(fn(undefined, stop));
    return this.l2Cache.use(l2 / this.clusterSize, (chunk) => fn(chunk.view, stop));
  }

  /**
   * The contract's read shape: completes synchronously (returns undefined)
   * while the L2 tables it needs are cached, the storage reads synchronously,
   * the layers below complete synchronously and compressed clusters are the
   * one last decompressed; at the first thing to wait for, a promise for the rest.
   */
  read(offset: number, into: Uint8Array, below: ReadBelow): void | Promise<void> {
    if (this.extended) return this.extended.read(offset, into, below);
    const cs = this.clusterSize;
    const end = offset + into.length;
    const storage = this.storage;
    const syncRead = storage.capabilities.syncRead && storage.readSync !== undefined;
    let pos = offset;
    while (pos < end) {
      const cluster = Math.floor(pos / cs);
      const l1Index = Math.floor(cluster / this.l2Entries);
      const l2 = this.l2Offset(l1Index);
      let dv: DataView | undefined;
      if (l2 !== 0) {
        const chunk = this.l2Cache.get(l2 / cs);
        if (chunk === undefined) return this.readFrom(offset, into, below, pos);
        dv = chunk.view;
      }
      const { first: m, runEnd } = this.runFrom(dv, (l1Index + 1) * this.l2Entries, cluster, end);
      // A request inside one run (every 4 KiB read) is `into` itself: no view to make.
      const part = pos === offset && runEnd === end ? into : into.subarray(pos - offset, runEnd - offset);
      const inCluster = pos - cluster * cs;
      switch (m.kind) {
        case 'unallocated': {
          const pending = below(pos, part);
          if (pending !== undefined) return pending.then(() => this.readFrom(offset, into, below, runEnd));
          break;
        }
        case 'zero':
        case 'zero-alloc':
          part.fill(0);
          break;
        case 'normal':
          if (!syncRead || storage.readSync!(m.host + inCluster, part) !== part.length)
            return this.readFrom(offset, into, below, pos);
          break;
        case 'compressed': {
          const data = this.decompressSync(m);
          if (data === undefined) return this.readFrom(offset, into, below, pos);
          part.set(data.subarray(inCluster, inCluster + part.length));
          break;
        }
      }
      pos = runEnd;
    }
    return undefined;
  }

  /** The asynchronous read of `into` (guest `offset`) from guest offset `pos` on. */
  private async readFrom(offset: number, into: Uint8Array, below: ReadBelow, pos: number): Promise<void> {
    const cs = this.clusterSize;
    const end = offset + into.length;
    while (pos < end) {
      const cluster = Math.floor(pos / cs);
      const run = await this.withL2View(cluster, (dv, stop) => this.runFrom(dv, stop, cluster, end));
      const part = into.subarray(pos - offset, run.runEnd - offset);
      const inCluster = pos - cluster * cs;
      const m = run.first;
      switch (m.kind) {
        case 'unallocated':
          await below(pos, part); // undefined when the layers below completed synchronously
          break;
        case 'zero':
        case 'zero-alloc':
          part.fill(0);
          break;
        case 'normal':
          await readZeroFilled(this.storage, m.host + inCluster, part);
          break;
        case 'compressed': {
          const data = await this.decompress(m, cluster);
          part.set(data.subarray(inCluster, inCluster + part.length));
          break;
        }
      }
      pos = run.runEnd;
    }
  }

  /**
   * The decompressed cluster without waiting: the last one, or one whose
   * payload the storage reads synchronously and whose codec decodes it
   * synchronously (zstd; deflate where the runtime has a synchronous zlib).
   * Undefined otherwise, and on any failure: the asynchronous path then
   * decides, with its typed errors.
   */
  private decompressSync(m: ClusterMapping): Uint8Array | undefined {
    const last = this.lastCompressed;
    if (last && last.host === m.host) return last.data;
    const storage = this.storage;
    if (!storage.capabilities.syncRead || storage.readSync === undefined) return undefined;
    if (m.host + m.csize > this.fileSize) return undefined; // zero-filled past EOF, or an error: the async path
    const payload = new Uint8Array(m.csize);
    if (storage.readSync(m.host, payload) !== payload.length) return undefined;
    let data: Uint8Array | undefined;
    try {
      data =
        this.header.compressionType === 1
          ? zstdCluster(payload, this.clusterSize)
          : inflateClusterSync(payload, this.clusterSize);
    } catch {
      return undefined;
    }
    if (data !== undefined) this.lastCompressed = { host: m.host, data };
    return data;
  }

  private async decompress(m: ClusterMapping, cluster: number): Promise<Uint8Array> {
    const ready = this.decompressSync(m);
    if (ready !== undefined) return ready;
    if (m.host + m.csize > this.fileSize + SECTOR) {
      throw new BlockError(
        'truncated',
        `compressed cluster at ${m.host} (guest cluster ${cluster}) lies past the end of the file`,
        {
          ...this.where,
          offset: m.host,
        },
      );
    }
    const payload = new Uint8Array(m.csize);
    await readZeroFilled(this.storage, m.host, payload);
    let data: Uint8Array;
    try {
      data =
        this.header.compressionType === 1
          ? zstdCluster(payload, this.clusterSize)
          : await inflateCluster(payload, this.clusterSize);
    } catch (cause) {
      throw new BlockError('io', `compressed cluster at ${m.host} (guest cluster ${cluster}) does not decompress`, {
        ...this.where,
        offset: m.host,
        code: 'EIO',
        cause,
      });
    }
    this.lastCompressed = { host: m.host, data };
    return data;
  }

  async blockStatus(offset: number, length: number): Promise<BlockStatus> {
    const cs = this.clusterSize;
    const limit = Math.ceil(this.size / SECTOR) * SECTOR;
    if (this.extended) return this.extended.blockStatus(offset, length, limit);
    const cluster = Math.floor(offset / cs);
    const inCluster = offset - cluster * cs;
    const want = Math.min(limit, offset + Math.max(length, 1));
    return this.withL2(cluster, (lookup, stop, zeroUntil) => {
      const first = lookup(cluster);
      let runEnd = Math.min(limit, (cluster + 1) * cs);
      let next = cluster + 1;
      if (first.kind === 'unallocated') {
        // All-zero entries are unallocated too: skip them in one scan (clusters c with c * cs < want).
        next = zeroUntil(next, Math.min(stop, Math.ceil(want / cs)));
        if (next > cluster + 1) runEnd = Math.min(limit, next * cs);
      }
      // Compressed clusters are read one by one, but as status they are one run (data, no host offset: the
      // entries qemu-img map merges): a copy of a compressed image then walks runs, not clusters.
      const compressed = first.kind === 'compressed';
      for (let c = next; c < stop && runEnd < want; c++) {
        const m = lookup(c);
        if (compressed ? m.kind !== 'compressed' : !sameRun(first, m, (c - cluster) * cs)) break;
        runEnd = Math.min(limit, (c + 1) * cs);
      }
      const len = runEnd - offset;
      switch (first.kind) {
        case 'unallocated':
          return { allocated: false, length: len };
        case 'zero':
          return { allocated: true, length: len, zero: true, data: false };
        case 'zero-alloc':
          return { allocated: true, length: len, zero: true, data: false, hostOffset: first.host + inCluster };
        case 'normal':
          return { allocated: true, length: len, data: true, hostOffset: first.host + inCluster };
        case 'compressed':
          return { allocated: true, length: len, data: true };
      }
    });
  }

  // ---- writing ----------------------------------------------------------------------------------

  private get rc(): Refcounts {
    const rc = this.refcounts;
    if (!rc) throw new BlockError('read-only', 'the image was opened read-only', { ...this.where, code: 'EACCES' });
    return rc;
  }

  /** Writes header bytes (serialised: the header is one sector other writers share). */
  private writeHeader(offset: number, bytes: Uint8Array): Promise<void> {
    return this.headerLock.run(() => writeTo(this.storage, offset, bytes));
  }

  /**
   * Before the first change: with lazy refcounts the dirty bit goes on (durably), as QEMU's
   * qcow2_mark_dirty; autoclear bits this driver does not maintain are cleared, as the spec asks
   * of a writer that does not understand them.
   */
  private prepare(): Promise<void> {
    if (this.prepared === undefined && !this.needsPreparing()) {
      // Nothing to write: ready at once, so that even the first writes take the synchronous path.
      this.ready = true;
      this.prepared = Promise.resolve();
    }
    this.prepared ??= (async () => {
      const h = this.header;
      if (this.lazyRefcounts && !this.dirty) {
        h.incompatibleFeatures |= BigInt(INCOMPAT_DIRTY);
        this.markedDirty = true;
      }
      h.autoclearFeatures = 0n;
      const fields = new Uint8Array(24);
      const dv = new DataView(fields.buffer);
      dv.setBigUint64(0, h.incompatibleFeatures);
      dv.setBigUint64(8, h.compatibleFeatures);
      dv.setBigUint64(16, h.autoclearFeatures);
      await this.writeHeader(72, fields);
      if (this.mode !== 'unsafe') await flushStorage(this.storage);
    })().then(() => {
      this.ready = true;
    });
    this.prepared.catch(() => {
      this.prepared = undefined;
    });
    return this.prepared;
  }

  /** Whether `prepare` has header bits to change (only v3 headers have them). */
  private needsPreparing(): boolean {
    const h = this.header;
    if (h.version !== 3) return false;
    return (this.lazyRefcounts && !this.dirty) || h.autoclearFeatures !== 0n;
  }

  /** Allocates a host cluster; returns its byte offset. Call under `meta`. */
  private async allocCluster(): Promise<number> {
    return (await this.allocClusterFresh()).host;
  }

  /**
   * Allocates a host cluster; `untouched` when it lies past every cluster in use so far (and past
   * the file's end at open): nothing ever wrote it, so whatever of it is not written reads as
   * zeros (a hole, or past the end of the file). Call under `meta`.
   */
  private async allocClusterFresh(): Promise<{ host: number; untouched: boolean }> {
    const before = this.rc.endCluster;
    const c = await this.rc.allocate();
    this.fileSize = Math.max(this.fileSize, this.rc.endCluster * this.clusterSize);
    return { host: c * this.clusterSize, untouched: c >= before };
  }

  private l1Entry(i: number): { hi: number; lo: number } {
    const dv = new DataView(this.l1.buffer, this.l1.byteOffset + i * 8, 8);
    return { hi: dv.getUint32(0), lo: dv.getUint32(4) };
  }

  private setL1(i: number, offset: number): void {
    const dv = new DataView(this.l1.buffer, this.l1.byteOffset + i * 8, 8);
    dv.setUint32(0, (COPIED_HI | Math.floor(offset / TWO32)) >>> 0);
    dv.setUint32(4, offset >>> 0);
    this.l1DirtyLo = Math.min(this.l1DirtyLo, i * 8);
    this.l1DirtyHi = Math.max(this.l1DirtyHi, i * 8 + 8);
  }

  /**
   * The L2 table of guest cluster c: its offset, or 0 when it has none. `read`: as it is;
   * `modify`: a table shared with an internal snapshot (L1 entry without COPIED) is copied first;
   * `allocate`: the same, and a missing table is allocated. Call under `meta`.
   */
  private async l2For(c: number, use: 'read' | 'modify' | 'allocate'): Promise<number> {
    const i = Math.floor(c / this.l2Entries);
    if (i >= this.header.l1Size) {
      throw new BlockError('out-of-range', `guest cluster ${c} lies past the L1 table`, { ...this.where });
    }
    const l2 = this.l2Offset(i);
    if (l2 !== 0) {
      if ((this.l1Entry(i).hi & COPIED_HI) !== 0 || use === 'read') return l2;
      // Shared with an internal snapshot (refcount > 1): copy it, as QEMU's l2_allocate. The data
      // clusters keep their refcounts (still reached from both L1 tables); the old table loses the
      // active L1's reference once the new L1 entry is durable.
      const copy = await this.l2Cache.use(l2 / this.clusterSize, (chunk) => chunk.bytes.slice());
      const t = await this.allocCluster();
      await this.l2Cache.use(t / this.clusterSize, (chunk) => {
        chunk.bytes.set(copy);
        this.l2Cache.markDirty(chunk, 0, chunk.bytes.length);
      });
      this.l2Tables.add(t / this.clusterSize);
      // The old table is the snapshots' alone now: once they are deleted it is free, not active metadata.
      this.l2Tables.delete(l2 / this.clusterSize);
      this.setL1(i, t);
      this.rc.free(l2 / this.clusterSize);
      return t;
    }
    if (use !== 'allocate') return 0;
    const t = await this.allocCluster();
    // QEMU's l2_allocate writes the refcount blocks out once a table is allocated, lazy refcounts
    // or not: after a crash only the data clusters' refcounts are stale (iotest 039's "ERROR
    // cluster 5 refcount=0", the L2 table at cluster 4 counted).
    if (this.markedDirty) await this.rc.writeBack();
    await this.l2Cache.use(t / this.clusterSize, (chunk) => {
      chunk.bytes.fill(0);
      this.l2Cache.markDirty(chunk, 0, chunk.bytes.length);
    });
    this.l2Tables.add(t / this.clusterSize);
    this.setL1(i, t);
    return t;
  }

  /** The L2 entry of guest cluster c in table l2: its mapping and COPIED bit. */
  private entryIn(l2: number, c: number): Promise<{ m: ClusterMapping; copied: boolean }> {
    return this.l2Cache.use(l2 / this.clusterSize, (chunk) => {
      const i = (c % this.l2Entries) * 8;
      const hi = chunk.view.getUint32(i);
      const lo = chunk.view.getUint32(i + 4);
      return { m: this.decode(hi, lo, c), copied: (hi & COPIED_HI) !== 0 };
    });
  }

  private setEntry(l2: number, c: number, hi: number, lo: number): Promise<void> {
    return this.l2Cache.use(l2 / this.clusterSize, (chunk) => {
      const i = (c % this.l2Entries) * 8;
      chunk.view.setUint32(i, hi >>> 0);
      chunk.view.setUint32(i + 4, lo >>> 0);
      this.l2Cache.markDirty(chunk, i, i + 8);
    });
  }

  /** Schedules the decrement of every host cluster mapping `m` held. */
  private release(m: ClusterMapping): void {
    const cs = this.clusterSize;
    switch (m.kind) {
      case 'normal':
      case 'zero-alloc':
        this.rc.free(m.host / cs);
        break;
      case 'compressed': {
        const last = Math.floor((m.host + m.csize - 1) / cs);
        for (let c = Math.floor(m.host / cs); c <= last; c++) this.rc.free(c);
        break;
      }
      default:
        break;
    }
  }

  write(offset: number, data: Uint8Array, flags?: WriteFlags, below?: ReadBelow): Promise<void> {
    if (!this.ready && this.prepared === undefined && this.refcounts !== undefined) void this.prepare();
    if (this.ready && flags?.compress !== true && this.mode !== 'writethrough' && this.meta.idle) {
      const cs = this.clusterSize;
      const c = Math.floor(offset / cs);
      const inC = offset - c * cs;
      if (inC + data.length <= cs) {
        // The common case without a promise per metadata step: see planNow.
        try {
          const plan = this.planNow(c);
          if (plan !== undefined) return this.writePlanned(c, inC, data, below, plan);
        } catch (err) {
          return Promise.reject(err);
        }
      }
    }
    return this.writeQueued(offset, data, flags, below);
  }

  /** `write` through the metadata lock, cluster by cluster (every case). */
  private async writeQueued(offset: number, data: Uint8Array, flags?: WriteFlags, below?: ReadBelow): Promise<void> {
    await this.prepare();
    const cs = this.clusterSize;
    const end = offset + data.length;
    const compress = flags?.compress === true;
    if (compress && offset % cs !== 0) {
      throw new BlockError('invalid-argument', `a compressed write must start on a cluster (offset ${offset})`, {
        ...this.where,
        offset,
        code: 'EINVAL',
      });
    }
    const pieces: Promise<void>[] = [];
    for (let pos = offset; pos < end; ) {
      const c = Math.floor(pos / cs);
      const stop = Math.min(end, (c + 1) * cs);
      const piece = data.subarray(pos - offset, stop - offset);
      pieces.push(compress ? this.writeCompressed(c, piece, below) : this.writeCluster(c, pos - c * cs, piece, below));
      pos = stop;
    }
    await settle(pieces);
    if (this.mode === 'writethrough') await this.flush();
  }

  /** Writes `piece` at byte `inC` of guest cluster c. */
  private async writeCluster(c: number, inC: number, piece: Uint8Array, below: ReadBelow | undefined): Promise<void> {
    const plan = await this.meta.run(async () => {
      const now = this.planNow(c);
      if (now !== undefined) return now;
      const l2 = await this.l2For(c, 'allocate');
      const { m, copied } = await this.entryIn(l2, c);
      if (m.kind === 'normal' && copied) return { l2, m, host: m.host, fresh: false, inPlace: true, untouched: false };
      if (m.kind === 'zero-alloc' && copied)
        return { l2, m, host: m.host, fresh: false, inPlace: false, untouched: false };
      const { host, untouched } = await this.allocClusterFresh();
      return { l2, m, host, fresh: true, inPlace: false, untouched };
    });
    await this.writePlanned(c, inC, piece, below, plan);
  }

  /**
   * The first metadata step of a write into guest cluster c, when all it needs is in memory: the L2
   * entry (its table cached, not shared with a snapshot) and, where the write needs a new cluster,
   * one from the refcount block at the allocator's hint (`Refcounts.allocateNow`); a missing table is
   * allocated as `l2For` would. Tables and blocks not cached are read synchronously where the storage
   * can (`MetadataCache.loadNow`). Undefined when something must be waited for: the data cluster is
   * then not taken (a table it allocated stays, linked from L1, as `l2For` leaves it). Synchronous,
   * so it needs no lock of its own: call it inside a `meta` section or while `meta` is idle (no
   * section running). With it, a 4 KiB allocating write is one storage write and no promise per
   * metadata step.
   */
  private planNow(c: number): WritePlan | undefined {
    const cs = this.clusterSize;
    if (this.extended !== undefined) return undefined;
    const i = Math.floor(c / this.l2Entries);
    if (i >= this.header.l1Size) return undefined;
    let l2 = this.l2Offset(i);
    let chunk: MetadataChunk<DataView> | undefined;
    if (l2 === 0) {
      // Lazy refcounts in effect: l2For writes the refcount blocks out at a table allocation (as QEMU's l2_allocate).
      if (this.markedDirty) return undefined;
      // A new table, as l2For's: a cluster whose chunk the cache can take without a write-back.
      const t = this.rc.allocateNow((x) => this.l2Cache.canCreateNow(x));
      if (t < 0) return undefined;
      chunk = this.l2Cache.createNow(t)!;
      l2 = t * cs;
      this.fileSize = Math.max(this.fileSize, this.rc.endCluster * cs);
      this.l2Tables.add(t);
      this.setL1(i, l2);
    } else {
      if ((this.l1Entry(i).hi & COPIED_HI) === 0) return undefined; // shared with a snapshot: copied by l2For
      chunk = this.l2Cache.loadNow(l2 / cs);
      if (chunk === undefined) return undefined;
    }
    const e = (c % this.l2Entries) * 8;
    const hi = chunk.view.getUint32(e);
    const m = this.decode(hi, chunk.view.getUint32(e + 4), c);
    const copied = (hi & COPIED_HI) !== 0;
    if (m.kind === 'normal' && copied) return { l2, m, host: m.host, fresh: false, inPlace: true, untouched: false };
    if (m.kind === 'zero-alloc' && copied)
      return { l2, m, host: m.host, fresh: false, inPlace: false, untouched: false };
    const rc = this.rc;
    const before = rc.endCluster;
    const hc = rc.allocateNow();
    if (hc < 0) return undefined;
    this.fileSize = Math.max(this.fileSize, rc.endCluster * cs);
    return { l2, m, host: hc * cs, fresh: true, inPlace: false, untouched: hc >= before };
  }

  /**
   * The data of a planned write, then (for a new or zero cluster) its L2 entry. Returns the storage
   * write's own promise for an in-place write, and issues the storage write before returning in the
   * cases with nothing to read.
   */
  private writePlanned(
    c: number,
    inC: number,
    piece: Uint8Array,
    below: ReadBelow | undefined,
    plan: WritePlan,
  ): Promise<void> {
    const cs = this.clusterSize;
    if (plan.inPlace) return writeTo(this.storage, plan.host + inC, piece);
    const m = plan.m;
    const zerosAround =
      m.kind === 'zero'
      || m.kind === 'zero-alloc'
      || (m.kind === 'unallocated' && (below === undefined || this.backing === undefined));
    let written: Promise<void>;
    if (piece.length === cs || (plan.untouched && zerosAround)) {
      // A cluster nothing ever wrote reads as zeros where it is not written: when the rest of the
      // guest cluster reads as zeros too, only the piece is written (QEMU zero-fills the same case
      // with write-zeroes instead of a buffer).
      written = writeTo(this.storage, plan.host + inC, piece);
    } else if (zerosAround) {
      const buf = new Uint8Array(cs);
      buf.set(piece, inC);
      written = writeTo(this.storage, plan.host, buf);
    } else {
      written = this.copyAround(c, inC, piece, below, plan);
    }
    return written.then(
      () => this.publish(c, plan),
      (err: unknown) => {
        if (plan.fresh) this.rc.free(plan.host / cs); // never referenced: freed at the next flush
        throw err;
      },
    );
  }

  /** Writes the whole cluster: `piece` at `inC`, around it what guest cluster c reads now. */
  private async copyAround(
    c: number,
    inC: number,
    piece: Uint8Array,
    below: ReadBelow | undefined,
    plan: WritePlan,
  ): Promise<void> {
    const buf = new Uint8Array(this.clusterSize);
    await this.fillAround(c, plan.m, buf, inC, inC + piece.length, below);
    buf.set(piece, inC);
    await writeTo(this.storage, plan.host, buf);
  }

  /**
   * Points guest cluster c's L2 entry at the planned cluster (refcount 1, COPIED) once its data is
   * written, and for a new cluster schedules the release of what the entry held: at once while no
   * `meta` section runs and the table is cached, else as a section.
   */
  private publish(c: number, plan: WritePlan): void | Promise<void> {
    const hi = (COPIED_HI | Math.floor(plan.host / TWO32)) >>> 0;
    const lo = plan.host >>> 0;
    if (this.meta.idle) {
      const chunk = this.l2Cache.get(plan.l2 / this.clusterSize);
      if (chunk !== undefined) {
        const e = (c % this.l2Entries) * 8;
        chunk.view.setUint32(e, hi);
        chunk.view.setUint32(e + 4, lo);
        this.l2Cache.markDirty(chunk, e, e + 8);
        if (plan.fresh) this.release(plan.m);
        return;
      }
    }
    return this.meta.run(async () => {
      await this.setEntry(plan.l2, c, hi, lo);
      if (plan.fresh) this.release(plan.m);
    });
  }

  /**
   * Stores guest cluster c compressed (`piece` starts on the cluster; shorter only at the image's
   * end, where the rest is zeros as in QEMU): deflated with a 4 KiB window (see deflate.ts), packed
   * after the previous payload (QEMU's qcow2_alloc_bytes), QEMU's descriptor (offset, additional
   * sectors, bit 62). When it does not shrink the cluster, an ordinary write. Unlike QEMU, which
   * refuses (EIO) a compressed write over an allocated cluster, the old cluster is freed.
   */
  private async writeCompressed(c: number, piece: Uint8Array, below: ReadBelow | undefined): Promise<void> {
    const cs = this.clusterSize;
    let whole = piece;
    if (piece.length < cs) {
      whole = new Uint8Array(cs);
      whole.set(piece);
    }
    const payload = deflateCluster(whole, cs - 1);
    if (!payload) return this.writeCluster(c, 0, piece, below);
    const plan = await this.meta.run(async () => {
      const l2 = await this.l2For(c, 'allocate');
      const { m } = await this.entryIn(l2, c);
      const at = await this.rc.allocBytes(payload.length);
      this.fileSize = Math.max(this.fileSize, this.rc.endCluster * cs);
      return { l2, m, at };
    });
    try {
      await writeTo(this.storage, plan.at, payload);
    } catch (err) {
      this.rc.free(Math.floor(plan.at / cs));
      throw err;
    }
    const { offsetBits } = compressedDescriptorBits(this.header.clusterBits);
    const nb = Math.floor((plan.at + payload.length - 1) / SECTOR) - Math.floor(plan.at / SECTOR);
    const desc = BigInt(plan.at) | (BigInt(nb) << BigInt(offsetBits)) | OFLAG_COMPRESSED;
    await this.meta.run(async () => {
      await this.setEntry(plan.l2, c, Number(desc >> 32n), Number(desc & 0xffffffffn));
      this.release(plan.m);
      if (this.lastCompressed && this.lastCompressed.host === plan.at) this.lastCompressed = undefined;
    });
  }

  /** Fills `buf` (guest cluster c) outside [from, to) with what the cluster reads now. */
  private async fillAround(
    c: number,
    m: ClusterMapping,
    buf: Uint8Array,
    from: number,
    to: number,
    below: ReadBelow | undefined,
  ): Promise<void> {
    const cs = this.clusterSize;
    const avail = Math.min(cs, Math.ceil(this.size / SECTOR) * SECTOR - c * cs);
    const parts: Array<[number, number]> = [];
    if (from > 0) parts.push([0, from]);
    if (to < avail) parts.push([to, avail]);
    if (parts.length === 0) return;
    switch (m.kind) {
      case 'zero':
      case 'zero-alloc':
        return;
      case 'unallocated':
        if (!below) return;
        for (const [a, b] of parts) await below(c * cs + a, buf.subarray(a, b));
        return;
      case 'normal':
        for (const [a, b] of parts) await readZeroFilled(this.storage, m.host + a, buf.subarray(a, b));
        return;
      case 'compressed': {
        const data = await this.decompress(m, c);
        for (const [a, b] of parts) buf.set(data.subarray(a, b), a);
        return;
      }
    }
  }

  /**
   * Makes whole clusters read as zeros (the core hands whole clusters: `zeroAlignment`). v3: zero
   * clusters, unallocated ones too (with `mayUnmap` the host cluster is freed, else a cluster with
   * refcount 1 is kept, preallocated); v2 has no zero flag: clusters are deallocated when nothing lies below, else
   * false (the core writes zeros).
   */
  async writeZeroes(offset: number, length: number, flags: { mayUnmap: boolean }): Promise<boolean> {
    const cs = this.clusterSize;
    const v3 = this.header.version === 3;
    if (!v3 && (!flags.mayUnmap || this.backing)) return false;
    const end = offset + length;
    if (offset % cs !== 0 || (end % cs !== 0 && end < Math.ceil(this.size / SECTOR) * SECTOR)) return false;
    await this.prepare();
    const unmap = flags.mayUnmap;
    for (let c = offset / cs; c * cs < end; c++) {
      await this.meta.run(async () => {
        const l2 = await this.l2For(c, v3 ? 'allocate' : 'modify');
        if (l2 === 0) return;
        const { m, copied } = await this.entryIn(l2, c);
        if (!v3) {
          if (m.kind === 'unallocated') return;
          await this.setEntry(l2, c, 0, 0);
          this.release(m);
          return;
        }
        if (m.kind === 'zero' || (m.kind === 'zero-alloc' && !unmap)) return;
        // An unallocated cluster becomes a zero cluster even with unmap and nothing below, as QEMU's
        // zero_in_l2_slice (it sets the flag whatever the old entry): qemu-io's map then reports it.
        if (!unmap && (m.kind === 'normal' || m.kind === 'zero-alloc') && copied) {
          await this.setEntry(l2, c, COPIED_HI | Math.floor(m.host / TWO32), (m.host >>> 0) | ZERO_LO);
          return;
        }
        await this.setEntry(l2, c, 0, ZERO_LO);
        this.release(m);
      });
    }
    if (this.mode === 'writethrough') await this.flush();
    return true;
  }

  /**
   * QEMU's discard: each whole cluster's host cluster is freed; on v3 the cluster then reads as
   * zeros (a zero cluster where it was allocated or a backing file lies below), on v2 it becomes
   * unallocated (the backing file shows through: `capabilities.discard` says which).
   */
  async discard(offset: number, length: number): Promise<void> {
    const cs = this.clusterSize;
    const first = Math.ceil(offset / cs);
    const imageEnd = Math.ceil(this.size / SECTOR) * SECTOR;
    const endC = offset + length >= imageEnd ? Math.ceil(imageEnd / cs) : Math.floor((offset + length) / cs);
    await this.discardClusters(first, endC, false);
  }

  /**
   * QEMU's qcow2_make_empty (a full discard of every cluster): each cluster becomes unallocated,
   * zero clusters included, so the whole image reads through to its backing file again. What
   * commit leaves in the overlay; `discard` would leave zero clusters on v3 that hide the backing file.
   */
  async makeEmpty(): Promise<void> {
    const imageEnd = Math.ceil(this.size / SECTOR) * SECTOR;
    await this.discardClusters(0, Math.ceil(imageEnd / this.clusterSize), true);
  }

  /** Clusters [first, endC) discarded: `full` makes them unallocated, else as `discard` says. */
  private async discardClusters(first: number, endC: number, full: boolean): Promise<void> {
    const v3 = this.header.version === 3;
    if (endC <= first) return;
    await this.prepare();
    for (let c = first; c < endC; c++) {
      const skipTo = await this.meta.run(async () => {
        const l2 = await this.l2For(c, !full && v3 && this.backing !== undefined ? 'allocate' : 'modify');
        // No L2 table: nothing to give up in the clusters it would map (a sparse terabyte is few tables).
        if (l2 === 0) return (Math.floor(c / this.l2Entries) + 1) * this.l2Entries;
        const { m } = await this.entryIn(l2, c);
        const allocated = m.kind === 'normal' || m.kind === 'compressed' || m.kind === 'zero-alloc';
        const lo = !full && v3 && (this.backing !== undefined || allocated) ? ZERO_LO : 0;
        if (m.kind === 'unallocated' && lo === 0) return undefined;
        if (m.kind === 'zero' && lo === ZERO_LO) return undefined;
        await this.setEntry(l2, c, 0, lo);
        this.release(m);
        return undefined;
      });
      if (skipTo !== undefined) c = skipTo - 1;
    }
    if (this.mode === 'writethrough') await this.flush();
  }

  /**
   * Makes every completed write durable, in order: data, refcount blocks (and the table entries of
   * new ones), L2 tables, then the L1 table; then the frees that those made safe are applied.
   */
  async flush(): Promise<void> {
    if (!this.refcounts) return;
    await this.flushLock.run(() => this.flushOnce());
  }

  private async flushOnce(): Promise<void> {
    const rc = this.rc;
    // What this flush publishes is what is in memory now: L1 and frees are taken before the L2 write-back.
    const frees = rc.takeFrees();
    const l1Lo = this.l1DirtyLo;
    const l1Hi = this.l1DirtyHi;
    const l1Bytes = l1Hi > l1Lo ? this.l1.slice(l1Lo, l1Hi) : undefined;
    this.l1DirtyLo = Number.POSITIVE_INFINITY;
    this.l1DirtyHi = 0;
    try {
      await this.l2Cache.writeBack(); // its barrier writes the refcounts back, whose barrier flushes the data
      if (l1Bytes) {
        await writeTo(this.storage, this.header.l1TableOffset + l1Lo, l1Bytes);
        if (this.mode !== 'unsafe') await flushStorage(this.storage);
      }
    } catch (err) {
      rc.returnFrees(frees);
      if (l1Bytes) {
        this.l1DirtyLo = Math.min(this.l1DirtyLo, l1Lo);
        this.l1DirtyHi = Math.max(this.l1DirtyHi, l1Hi);
      }
      throw err;
    }
    if (frees.length > 0) {
      await this.meta.run(() => rc.applyFrees(frees));
      if (!this.markedDirty) await rc.writeBack();
    }
  }

  /**
   * What the snapshot operations (snapshot-write.ts) work through, so that every refcount and L2
   * change goes through this image's caches and they stay coherent. Call with no request in flight.
   */
  snapshotEngine(): SnapshotEngine {
    const cs = this.clusterSize;
    return {
      storage: this.storage,
      header: this.header,
      rc: this.rc,
      unsafe: this.mode === 'unsafe',
      prepare: () => this.prepare(),
      flush: () => this.flush(),
      useL2: (offset, fn) =>
        this.l2Cache.use(offset / cs, (chunk) => fn(chunk.view, (lo, hi) => this.l2Cache.markDirty(chunk, lo, hi))),
      writeBackL2: () => this.l2Cache.writeBack(),
      activeL1: () => this.l1,
      writeHeader: (offset, bytes) => this.writeHeader(offset, bytes),
      allocated: () => {
        this.fileSize = Math.max(this.fileSize, this.rc.endCluster * cs);
      },
      setActive: (l1, size) => {
        // The header names the new table durably (the caller wrote it): the old one's L2 tables
        // are no longer the active ones, and the last decompressed cluster may be freed soon.
        this.l1 = l1;
        this.l2Tables.clear();
        for (let i = 0; i < this.header.l1Size; i++) {
          const l2 = this.l2Offset(i);
          if (l2 !== 0) this.l2Tables.add(l2 / cs);
        }
        this.lastCompressed = undefined;
        this.header.size = size;
        this.size = size;
      },
    };
  }

  // ---- resize and backing reference --------------------------------------------------------------

  /**
   * qemu-img resize: growing may need a larger L1 table (allocated contiguously, written and made
   * durable, then the header's l1_size and l1_table_offset switched in one write, the old table
   * freed); shrinking discards the clusters past the new end and the L2 tables past the new L1
   * reach (as QEMU's full discard and qcow2_shrink_l1_table), made durable before the size goes
   * down. The size field is written last on a grow and after the discards on a shrink. As QEMU:
   * the size must be a multiple of 512, v2 images with internal snapshots are refused (v3 ones
   * resize; their snapshots keep their sizes), and only `preallocation=off`.
   */
  async resize(size: number, options: ResizeOptions): Promise<void> {
    const cs = this.clusterSize;
    if (size % SECTOR !== 0) {
      throw new BlockError('invalid-argument', 'The new size must be a multiple of 512', {
        ...this.where,
        code: 'EINVAL',
      });
    }
    // QEMU 7.2 resizes a v3 image with snapshots (each snapshot keeps its own size in its extra
    // data, and only the active L1 changes); a v2 entry may lack that size, so v2 is refused.
    if (this.header.nbSnapshots > 0 && this.header.version < 3) {
      throw new BlockError('not-supported', "Can't resize a v2 image which has snapshots", {
        ...this.where,
        code: 'ENOTSUP',
      });
    }
    supportedPreallocation(options.preallocation, ['off'], this.where);
    await this.prepare();
    const old = this.size;
    if (size === old) return;
    const needL1 = l1EntriesFor(size, this.header.clusterBits);
    if (size > old) {
      if (old % cs !== 0) {
        // The rest of the old last cluster becomes guest data: it must read as zeros, not stale bytes.
        const c = Math.floor(old / cs);
        const m = await this.meta.run(async () => {
          const l2 = await this.l2For(c, 'read');
          return l2 === 0 ? UNALLOCATED : (await this.entryIn(l2, c)).m;
        });
        if (m.kind === 'normal' || m.kind === 'compressed') {
          await this.writeCluster(c, old - c * cs, new Uint8Array((c + 1) * cs - old), undefined);
        }
      }
      if (needL1 > this.header.l1Size) await this.growL1(needL1);
    } else {
      const first = Math.ceil(size / cs);
      const end = Math.ceil(old / cs);
      for (let c = first; c < end; c++) {
        await this.meta.run(async () => {
          const l2 = await this.l2For(c, 'modify');
          if (l2 === 0) return;
          const { m } = await this.entryIn(l2, c);
          if (m.kind === 'unallocated') return;
          await this.setEntry(l2, c, 0, 0);
          this.release(m);
        });
      }
      await this.meta.run(() => {
        for (let i = needL1; i < this.header.l1Size; i++) {
          const l2 = this.l2Offset(i);
          if (l2 === 0) continue;
          const dv = new DataView(this.l1.buffer, this.l1.byteOffset + i * 8, 8);
          dv.setUint32(0, 0);
          dv.setUint32(4, 0);
          this.l1DirtyLo = Math.min(this.l1DirtyLo, i * 8);
          this.l1DirtyHi = Math.max(this.l1DirtyHi, i * 8 + 8);
          this.l2Tables.delete(l2 / cs);
          this.rc.free(l2 / cs);
        }
      });
    }
    await this.flush();
    const field = new Uint8Array(8);
    new DataView(field.buffer).setBigUint64(0, BigInt(size));
    await this.writeHeader(24, field);
    if (this.mode !== 'unsafe') await flushStorage(this.storage);
    this.header.size = size;
    this.size = size;
  }

  /** Replaces the L1 table by one of `entries` entries (QEMU's qcow2_grow_l1_table). */
  private async growL1(entries: number): Promise<void> {
    const cs = this.clusterSize;
    if (entries * 8 > MAX_L1_BYTES) {
      throw new BlockError('invalid-argument', 'Active L1 table too large', { ...this.where, code: 'EFBIG' });
    }
    // Everything the old table names goes to disk first: the new table is written from memory.
    await this.flush();
    await this.meta.run(async () => {
      const clusters = Math.ceil((entries * 8) / cs);
      const at = (await this.rc.allocateRun(clusters)) * cs;
      this.fileSize = Math.max(this.fileSize, this.rc.endCluster * cs);
      const table = new Uint8Array(clusters * cs);
      table.set(this.l1);
      await writeTo(this.storage, at, table);
      await flushStorage(this.storage);
      const fields = new Uint8Array(12);
      const dv = new DataView(fields.buffer);
      dv.setUint32(0, entries);
      dv.setBigUint64(4, BigInt(at));
      await this.writeHeader(36, fields);
      await flushStorage(this.storage);
      const oldAt = this.header.l1TableOffset;
      const oldClusters = Math.ceil((this.header.l1Size * 8) / cs);
      this.l1 = table.subarray(0, entries * 8);
      this.header.l1Size = entries;
      this.header.l1TableOffset = at;
      // The header names the new table durably: the old one's clusters are free (applied at the next flush).
      for (let c = oldAt / cs; c < oldAt / cs + oldClusters; c++) this.rc.free(c);
    });
  }

  /**
   * Rewrites the backing file name and format (rebase, commit): the header cluster is rebuilt as
   * QEMU's qcow2_update_header lays it out (the fixed header, the extensions in their order with the
   * backing format one replaced, the end marker, then the name) and written in one write, so a
   * header of at most one sector changes atomically. qcow2 records no facts of the backing file.
   */
  async setBacking(backing: BackingSpec | undefined): Promise<void> {
    const cs = this.clusterSize;
    const h = this.header;
    await this.prepare();
    const fixed = new Uint8Array(h.headerLength);
    await readZeroFilled(this.storage, 0, fixed);
    const name = backing ? new TextEncoder().encode(backing.path) : undefined;
    if (name && name.length > MAX_BACKING_NAME) {
      throw new BlockError('invalid-argument', 'Backing file name too long', { ...this.where, field: 'backing_file' });
    }
    const format = backing?.format ? new TextEncoder().encode(backing.format) : undefined;
    if (format && format.length >= 16) {
      throw new BlockError('invalid-argument', `backing format '${backing!.format}' is too long`, {
        ...this.where,
        field: 'backing_fmt',
      });
    }
    const exts: Array<{ type: number; data: Uint8Array }> = [];
    if (format && name) exts.push({ type: EXT_BACKING_FORMAT, data: format });
    for (const e of h.extensions) if (e.type !== EXT_BACKING_FORMAT) exts.push({ type: e.type, data: e.data });
    let length = h.headerLength;
    for (const e of exts) length += 8 + ((e.data.length + 7) & ~7);
    length += 8;
    const nameAt = length;
    length += name?.length ?? 0;
    if (length > cs) {
      throw new BlockError(
        'invalid-argument',
        'the header, its extensions and the backing file name do not fit in a cluster',
        {
          ...this.where,
          field: 'backing_file',
        },
      );
    }
    const out = new Uint8Array(Math.max(length, h.headerLength));
    out.set(fixed);
    const dv = new DataView(out.buffer);
    let at = h.headerLength;
    for (const e of exts) {
      dv.setUint32(at, e.type);
      dv.setUint32(at + 4, e.data.length);
      out.set(e.data, at + 8);
      at += 8 + ((e.data.length + 7) & ~7);
    }
    if (name) out.set(name, nameAt);
    dv.setBigUint64(8, BigInt(name ? nameAt : 0));
    dv.setUint32(16, name?.length ?? 0);
    // Bytes the old layout used past the new end are cleared in the same write.
    const oldEnd = h.backingFileOffset !== 0 ? h.backingFileOffset + h.backingFileSize : h.headerLength + 512;
    const whole = new Uint8Array(Math.min(cs, Math.max(out.length, oldEnd)));
    whole.set(out);
    await this.writeHeader(0, whole);
    if (this.mode !== 'unsafe') await flushStorage(this.storage);
    h.backingFileOffset = name ? nameAt : 0;
    h.backingFileSize = name?.length ?? 0;
    h.extensions = exts.map((e) => ({ type: e.type, offset: 0, data: e.data }));
    if (name) h.backingName = name;
    else delete h.backingName;
    if (format && name) h.backingFormat = backing!.format!;
    else delete h.backingFormat;
    if (backing) {
      this.backing = { path: backing.path, ...(backing.format ? { format: backing.format } : {}) };
    } else {
      delete this.backing;
    }
  }

  async close(): Promise<void> {
    try {
      if (this.refcounts) {
        await this.flush();
        if (this.markedDirty) {
          // A clean close: the refcounts flush left in memory go out, then the dirty bit (QEMU's qcow2_mark_clean).
          await this.rc.writeBack();
          if (this.mode !== 'unsafe') await flushStorage(this.storage);
          this.header.incompatibleFeatures &= ~BigInt(INCOMPAT_DIRTY);
          const fields = new Uint8Array(8);
          new DataView(fields.buffer).setBigUint64(0, this.header.incompatibleFeatures);
          await this.writeHeader(72, fields);
          if (this.mode !== 'unsafe') await flushStorage(this.storage);
          this.markedDirty = false;
        }
      }
    } finally {
      await this.storage.close();
    }
  }

  /** qemu-img's ImageInfoSpecificQCow2 fields, in its order (v2 images show compat, compression-type, refcount-bits). */
  info(): Record<string, unknown> {
    const h = this.header;
    const incompat = Number(h.incompatibleFeatures & 0xffffffffn);
    const data: Record<string, unknown> = { compat: h.version === 2 ? '0.10' : '1.1' };
    data['compression-type'] = h.compressionType === 1 ? 'zstd' : 'zlib';
    if (h.version === 3) data['lazy-refcounts'] = (Number(h.compatibleFeatures & 1n) & COMPAT_LAZY_REFCOUNTS) !== 0;
    data['refcount-bits'] = 2 ** h.refcountOrder;
    if (h.version === 3) {
      data.corrupt = (incompat & INCOMPAT_CORRUPT) !== 0;
      data['extended-l2'] = (incompat & INCOMPAT_EXTENDED_L2) !== 0;
    }
    return data;
  }

  /** The incompatible dirty bit (QEMU's `dirty-flag`): refcounts may be stale; reading is unaffected. */
  get dirty(): boolean {
    return (this.header.incompatibleFeatures & BigInt(INCOMPAT_DIRTY)) !== 0n;
  }
}

/** Whether guest cluster mapping `m`, `distance` bytes after `first`, continues `first`'s run. */
function sameRun(first: ClusterMapping, m: ClusterMapping, distance: number): boolean {
  if (m.kind !== first.kind) return false;
  if (first.kind === 'normal' || first.kind === 'zero-alloc') return m.host === first.host + distance;
  return first.kind !== 'compressed';
}

/** Waits for every promise, then throws the first failure. */
async function settle(promises: Promise<void>[]): Promise<void> {
  const results = await Promise.allSettled(promises);
  for (const r of results) if (r.status === 'rejected') throw r.reason;
}
