/**
 * QEMU 7.2's cluster allocator (block/qcow2-refcount.c), replayed in memory: `create` runs the same
 * sequence of allocations qcow2_co_create and qcow2_co_truncate run, so blk places every table
 * where qemu-img does (header, refcount table, refcount blocks that describe themselves, refcount
 * table growth, L1, L2 tables and preallocated data), byte for byte.
 *
 * Only the metadata lives here (a map of cluster index -> bytes); data clusters are counted, never
 * held. Pure: no I/O.
 */
import { maxRefcount, readRefcount, refcountMetadataSize, writeRefcount } from './layout.js';

/** Thrown inside the replay when QEMU's allocator would fail (EFBIG and the like). */
export class SimError extends Error {}

const AGAIN = Symbol('EAGAIN');
type Again = typeof AGAIN;

export class AllocatorSim {
  readonly cs: number;
  readonly rbBits: number;
  /** Refcount entries per refcount block. */
  readonly rbSize: number;
  /** In-memory refcount table (entries; length = refcount_table_size). */
  reftable: number[];
  reftableOffset: number;
  maxReftableIndex = 0;
  freeIndex = 0;
  /** Metadata clusters written so far: cluster index -> bytes (one cluster each). */
  readonly clusters = new Map<number, Uint8Array>();
  /** Refcount blocks by host offset (also present in `clusters`). */
  readonly refblocks = new Map<number, Uint8Array>();
  /** The file's length as QEMU's writes leave it. */
  fileLength = 0;
  private readonly max: number;

  constructor(
    readonly clusterBits: number,
    readonly refcountOrder: number,
  ) {
    this.cs = 2 ** clusterBits;
    this.rbBits = clusterBits + 3 - refcountOrder;
    this.rbSize = 2 ** this.rbBits;
    this.max = maxRefcount(refcountOrder);
    this.reftable = [];
    this.reftableOffset = 0;
  }

  /** The bytes of cluster `index` (created zeroed). */
  cluster(index: number): Uint8Array {
    let c = this.clusters.get(index);
    if (c === undefined) {
      c = new Uint8Array(this.cs);
      this.clusters.set(index, c);
    }
    return c;
  }

  /** Records a write of `length` bytes at `offset` (the file grows to cover it). */
  wrote(offset: number, length: number): void {
    this.fileLength = Math.max(this.fileLength, offset + length);
  }

  updateMaxIndex(): void {
    let i = this.reftable.length - 1;
    while (i > 0 && this.reftable[i] === 0) i--;
    this.maxReftableIndex = Math.max(i, 0);
  }

  getRefcount(clusterIndex: number): number {
    const ti = Math.floor(clusterIndex / this.rbSize);
    if (ti >= this.reftable.length) return 0;
    const off = this.reftable[ti]!;
    if (off === 0) return 0;
    const block = this.refblocks.get(off);
    if (block === undefined) throw new SimError(`refcount block at ${off} missing`);
    return readRefcount(block, clusterIndex % this.rbSize, this.refcountOrder);
  }

  private newRefblock(offset: number): Uint8Array {
    const block = new Uint8Array(this.cs);
    this.clusters.set(offset / this.cs, block);
    this.refblocks.set(offset, block);
    this.wrote(offset, this.cs);
    return block;
  }

  /** alloc_clusters_noref: the first run of `size` bytes of free clusters from free_cluster_index. */
  allocNoref(size: number): number {
    const n = Math.ceil(size / this.cs);
    for (;;) {
      let ok = true;
      for (let i = 0; i < n; i++) {
        const idx = this.freeIndex++;
        if (this.getRefcount(idx) !== 0) {
          ok = false;
          break;
        }
      }
      if (ok) break;
    }
    return (this.freeIndex - n) * this.cs;
  }

  /** update_refcount; AGAIN when a refcount block had to be allocated (the caller searches again). */
  updateRefcount(offset: number, length: number, addend: number, decrease: boolean): Again | undefined {
    if (length === 0) return undefined;
    const cs = this.cs;
    const start = Math.floor(offset / cs) * cs;
    const last = Math.floor((offset + length - 1) / cs) * cs;
    let oldTable = -1;
    let block: Uint8Array | undefined;
    let at = start;
    let failed: Again | undefined;
    for (; at <= last; at += cs) {
      const ci = at / cs;
      const ti = Math.floor(ci / this.rbSize);
      if (ti !== oldTable) {
        const got = this.allocRefcountBlock(ci);
        if (got === AGAIN) {
          if (this.freeIndex > start / cs) this.freeIndex = start / cs;
          failed = AGAIN;
          break;
        }
        block = got;
      }
      oldTable = ti;
      const bi = ci % this.rbSize;
      let rc = readRefcount(block!, bi, this.refcountOrder);
      if (decrease ? rc < addend : rc + addend > this.max) throw new SimError(`refcount of cluster ${ci} overflows`);
      rc = decrease ? rc - addend : rc + addend;
      if (rc === 0 && ci < this.freeIndex) this.freeIndex = ci;
      writeRefcount(block!, bi, this.refcountOrder, rc);
    }
    if (failed) {
      // Undo what this call changed (QEMU's error path).
      if (at > offset) this.updateRefcount(offset, at - offset, addend, !decrease);
      return failed;
    }
    return undefined;
  }

  /** alloc_refcount_block: the block covering cluster `ci`, or AGAIN after allocating one. */
  private allocRefcountBlock(ci: number): Uint8Array | Again {
    const ti = Math.floor(ci / this.rbSize);
    if (ti < this.reftable.length) {
      const off = this.reftable[ti]!;
      if (off !== 0) {
        const block = this.refblocks.get(off);
        if (block === undefined) throw new SimError(`refcount block at ${off} missing`);
        return block;
      }
    }
    const newBlock = this.allocNoref(this.cs);
    if (newBlock === 0) throw new SimError('Preventing invalid allocation of refcount block at offset 0');
    const nbIndex = newBlock / this.cs;
    if (Math.floor(nbIndex / this.rbSize) === ti) {
      const block = this.newRefblock(newBlock);
      writeRefcount(block, nbIndex % this.rbSize, this.refcountOrder, 1);
    } else {
      const r = this.updateRefcount(newBlock, this.cs, 1, false);
      if (r === AGAIN) return AGAIN;
      this.newRefblock(newBlock);
    }
    if (ti < this.reftable.length) {
      this.reftable[ti] = newBlock;
      this.writeReftable();
      this.maxReftableIndex = Math.max(this.maxReftableIndex, ti);
      return AGAIN;
    }
    // Grow the refcount table: new blocks and table at the end, describing themselves.
    const blocksUsed = Math.ceil(Math.max(ci + 1, nbIndex + 1) / this.rbSize);
    const metaOffset = blocksUsed * this.rbSize * this.cs;
    this.refcountArea(metaOffset, 0, false, ti, newBlock);
    return AGAIN;
  }

  /** The refcount table's bytes written at its place. */
  writeReftable(): void {
    const bytes = this.reftable.length * 8;
    const first = this.reftableOffset / this.cs;
    for (let c = 0; c * this.cs < bytes; c++) {
      const cl = this.cluster(first + c);
      const dv = new DataView(cl.buffer, cl.byteOffset, cl.byteLength);
      for (let j = 0; j < this.cs / 8; j++) {
        const v = this.reftable[c * (this.cs / 8) + j] ?? 0;
        dv.setUint32(j * 8, Math.floor(v / 2 ** 32));
        dv.setUint32(j * 8 + 4, v >>> 0);
      }
    }
    this.wrote(this.reftableOffset, bytes);
  }

  /** qcow2_refcount_area: refcount blocks and a new refcount table at `start`; returns the end offset. */
  refcountArea(start: number, additional: number, exact: boolean, newIndex: number, newOffset: number): number {
    const cs = this.cs;
    const { blocks: total } = refcountMetadataSize(start / cs + additional, cs, this.refcountOrder, !exact);
    if (total > 8 * 1024 * 1024) throw new SimError('refcount table too large');
    const areaIndex = Math.floor(start / cs / this.rbSize);
    let tableSize = exact ? total : total + Math.ceil(total / 2);
    const perCluster = cs / 8;
    tableSize = Math.ceil(tableSize / perCluster) * perCluster;
    const tableClusters = (tableSize * 8) / cs;
    if (tableSize > 8 * 1024 * 1024) throw new SimError('refcount table too large');
    const table = new Array<number>(tableSize).fill(0);
    const keep = tableSize > this.maxReftableIndex ? this.maxReftableIndex + 1 : tableSize;
    for (let i = 0; i < keep && i < this.reftable.length; i++) table[i] = this.reftable[i]!;
    if (newOffset) table[newIndex] = newOffset;
    let additionalBlocks = 0;
    for (let i = areaIndex; i < total; i++) if (!table[i]) additionalBlocks++;
    const tableOffset = start + additionalBlocks * cs;
    const end = tableOffset + tableClusters * cs;
    let blockOffset = start;
    for (let i = areaIndex; i < total; i++) {
      let block: Uint8Array;
      if (table[i]) {
        const b = this.refblocks.get(table[i]!);
        if (b === undefined) throw new SimError(`refcount block at ${table[i]} missing`);
        block = b;
      } else {
        block = this.newRefblock(blockOffset);
        table[i] = blockOffset;
        blockOffset += cs;
      }
      const firstCovered = i * this.rbSize * cs;
      if (firstCovered < end) {
        let j = firstCovered < start ? (start - firstCovered) / cs : 0;
        const endIndex = Math.min((end - firstCovered) / cs, this.rbSize);
        for (; j < endIndex; j++) writeRefcount(block, j, this.refcountOrder, 1);
      }
    }
    const oldOffset = this.reftableOffset;
    const oldBytes = this.reftable.length * 8;
    this.reftable = table;
    this.reftableOffset = tableOffset;
    this.writeReftable();
    this.updateMaxIndex();
    this.freeClusters(oldOffset, oldBytes);
    return end;
  }

  /** qcow2_alloc_clusters. */
  allocClusters(size: number): number {
    for (;;) {
      const offset = this.allocNoref(size);
      if (offset / this.cs + Math.ceil(size / this.cs) > 2 ** (56 - this.clusterBits))
        throw new SimError('Image is too big');
      if (this.updateRefcount(offset, size, 1, false) !== AGAIN) return offset;
    }
  }

  /** qcow2_alloc_clusters_at: how many of `n` clusters at `offset` it could allocate. */
  allocClustersAt(offset: number, n: number): number {
    if (n === 0) return 0;
    for (;;) {
      let i = 0;
      const ci = offset / this.cs;
      for (; i < n; i++) if (this.getRefcount(ci + i) !== 0) break;
      if (this.updateRefcount(offset, i * this.cs, 1, false) !== AGAIN) return i;
    }
  }

  /** qcow2_free_clusters (no discard: QEMU's default for this kind). */
  freeClusters(offset: number, size: number): void {
    if (size > 0 && this.updateRefcount(offset, size, 1, true) === AGAIN) {
      throw new SimError('freeing clusters needed a refcount block');
    }
  }

  /** qcow2_get_last_cluster: the last cluster below `size` bytes with a nonzero refcount, or -1. */
  lastCluster(size: number): number {
    for (let i = size / this.cs - 1; i >= 0; i--) if (this.getRefcount(i) !== 0) return i;
    return -1;
  }
}
