/**
 * An open qcow2 image, read-only: L1 in memory, L2 tables through a bounded
 * MetadataCache (one chunk per cluster), the four L2 entry kinds, deflate
 * through the portable DecompressionStream.
 */
import {
  BlockError,
  MetadataCache,
  readZeroFilled,
  type BackingReference,
  type BlockStatus,
  type DriverCapabilities,
  type DriverImage,
  type ReadBelow,
  type Storage,
  type BlockDriver,
} from '@blk/core/portable';
import { inflateCluster } from './inflate.js';
import {
  COMPAT_LAZY_REFCOUNTS,
  INCOMPAT_CORRUPT,
  INCOMPAT_DIRTY,
  INCOMPAT_EXTENDED_L2,
  type Qcow2Header,
} from './header.js';

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

const UNALLOCATED: ClusterMapping = Object.freeze({ kind: 'unallocated', host: 0, csize: 0 });
const TWO32 = 2 ** 32;

export class Qcow2Image implements DriverImage {
  readonly requestAlignment = SECTOR;
  readonly size: number;
  readonly backing?: BackingReference;
  readonly capabilities: DriverCapabilities;
  private readonly clusterSize: number;
  private readonly l2Entries: number;
  private readonly l2Cache: MetadataCache<DataView>;
  private readonly where: { path: string; driver: 'qcow2' };
  /** The last decompressed cluster, as QEMU keeps one (sequential small reads decompress once). */
  private lastCompressed: { host: number; data: Uint8Array } | undefined;

  constructor(
    readonly driver: BlockDriver,
    private readonly storage: Storage,
    readonly header: Qcow2Header,
    private readonly l1: Uint8Array,
    private readonly fileSize: number,
    backing: BackingReference | undefined,
  ) {
    this.size = header.size;
    this.clusterSize = header.clusterSize;
    this.l2Entries = header.clusterSize / 8;
    this.where = { path: storage.path, driver: 'qcow2' };
    if (backing) this.backing = backing;
    this.capabilities = { blockStatus: true, limits: { clusterSize: header.clusterSize } };
    const regionLength = Math.ceil(fileSize / this.clusterSize) * this.clusterSize;
    this.l2Cache = new MetadataCache<DataView>({
      storage,
      offset: 0,
      length: Math.max(regionLength, this.clusterSize),
      chunkBytes: this.clusterSize,
      maxBytes: Math.max(L2_CACHE_BYTES, 4 * this.clusterSize),
      mode: 'writeback',
      view: (bytes) => new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength),
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
    if (l1Index >= this.header.l1Size) return 0;
    const dv = new DataView(this.l1.buffer, this.l1.byteOffset + l1Index * 8, 8);
    const hi = dv.getUint32(0);
    const lo = dv.getUint32(4);
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
  private async withL2<T>(cluster: number, fn: (lookup: (c: number) => ClusterMapping, stop: number) => T): Promise<T> {
    const l1Index = Math.floor(cluster / this.l2Entries);
    const stop = (l1Index + 1) * this.l2Entries;
    const l2 = this.l2Offset(l1Index);
    if (l2 === 0) return fn(() => UNALLOCATED, stop);
    return this.l2Cache.use(l2 / this.clusterSize, (chunk) => {
      const dv = chunk.view;
      return fn((c) => {
        const i = (c % this.l2Entries) * 8;
        return this.decode(dv.getUint32(i), dv.getUint32(i + 4), c);
      }, stop);
    });
  }

  /** Mapping of one guest cluster (for tests and tools). */
  mapping(cluster: number): Promise<ClusterMapping> {
    return this.withL2(cluster, (lookup) => lookup(cluster));
  }

  /** Guest clusters from `cluster` that continue its run (one kind, contiguous on the host), up to `end` and the table's `stop`. */
  private runFrom(
    lookup: (c: number) => ClusterMapping,
    stop: number,
    cluster: number,
    end: number,
  ): { first: ClusterMapping; runEnd: number } {
    const cs = this.clusterSize;
    const first = lookup(cluster);
    let runEnd = Math.min(end, (cluster + 1) * cs);
    if (first.kind !== 'compressed') {
      for (let c = cluster + 1; c < stop && runEnd < end; c++) {
        if (!sameRun(first, lookup(c), (c - cluster) * cs)) break;
        runEnd = Math.min(end, (c + 1) * cs);
      }
    }
    return { first, runEnd };
  }

  /**
   * The contract's read shape: completes synchronously (returns undefined)
   * while the L2 tables it needs are cached, the storage reads synchronously,
   * the layers below complete synchronously and compressed clusters are the
   * one last decompressed; at the first thing to wait for, a promise for the rest.
   */
  read(offset: number, into: Uint8Array, below: ReadBelow): void | Promise<void> {
    const cs = this.clusterSize;
    const end = offset + into.length;
    const storage = this.storage;
    const syncRead = storage.capabilities.syncRead && storage.readSync !== undefined;
    let pos = offset;
    while (pos < end) {
      const cluster = Math.floor(pos / cs);
      const l1Index = Math.floor(cluster / this.l2Entries);
      const l2 = this.l2Offset(l1Index);
      let lookup: (c: number) => ClusterMapping;
      if (l2 === 0) {
        lookup = () => UNALLOCATED;
      } else {
        const chunk = this.l2Cache.get(l2 / cs);
        if (chunk === undefined) return this.readFrom(offset, into, below, pos);
        const dv = chunk.view;
        lookup = (c) => {
          const i = (c % this.l2Entries) * 8;
          return this.decode(dv.getUint32(i), dv.getUint32(i + 4), c);
        };
      }
      const { first: m, runEnd } = this.runFrom(lookup, (l1Index + 1) * this.l2Entries, cluster, end);
      const part = into.subarray(pos - offset, runEnd - offset);
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
          const last = this.lastCompressed;
          if (last === undefined || last.host !== m.host) return this.readFrom(offset, into, below, pos);
          part.set(last.data.subarray(inCluster, inCluster + part.length));
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
      const run = await this.withL2(cluster, (lookup, stop) => this.runFrom(lookup, stop, cluster, end));
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

  private async decompress(m: ClusterMapping, cluster: number): Promise<Uint8Array> {
    const last = this.lastCompressed;
    if (last && last.host === m.host) return last.data;
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
      data = await inflateCluster(payload, this.clusterSize);
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
    const cluster = Math.floor(offset / cs);
    const inCluster = offset - cluster * cs;
    const want = Math.min(limit, offset + Math.max(length, 1));
    return this.withL2(cluster, (lookup, stop) => {
      const first = lookup(cluster);
      let runEnd = Math.min(limit, (cluster + 1) * cs);
      if (first.kind !== 'compressed') {
        for (let c = cluster + 1; c < stop && runEnd < want; c++) {
          if (!sameRun(first, lookup(c), (c - cluster) * cs)) break;
          runEnd = Math.min(limit, (c + 1) * cs);
        }
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

  async flush(): Promise<void> {}

  async close(): Promise<void> {
    await this.storage.close();
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
