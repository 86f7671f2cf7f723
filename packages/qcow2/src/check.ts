/**
 * qemu-img check for qcow2, as QEMU 7.2's qcow2_check_refcounts: the refcount of every host
 * cluster is computed from scratch (header, active L1 and its L2 tables, snapshot L1/L2 tables,
 * snapshot table, refcount table, refcount blocks) and compared with the refcounts on disk;
 * COPIED flags are checked against the on-disk refcounts. The messages and counts are QEMU's.
 *
 * Repairs (`-r leaks`, `-r all`) change refcounts in place (no allocation), fix COPIED flags and,
 * when the refcount structure itself is broken, rebuild it as QEMU's rebuild_refcount_structure
 * does: refcount blocks written as slices of the computed refcounts, a new refcount table placed
 * in the first free clusters, the header switched to it; the old structures are then leaks, fixed.
 * This works on the storage directly: the image must be opened for nothing else meanwhile.
 */
import {
  readZeroFilled,
  truncateTo,
  writeTo,
  type CheckStats,
  type DriverCheckResult,
  type RepairRequest,
  type Storage,
} from '@blk/core/portable';
import { INCOMPAT_CORRUPT, INCOMPAT_DIRTY, MAX_L1_BYTES, parseHeader, type Qcow2Header } from './header.js';
import { maxRefcount, readRefcount, refcountsPerBlock, writeRefcount } from './layout.js';
import { readSnapshotTable, type Qcow2Snapshot } from './snapshots.js';

const TWO32 = 2 ** 32;

type Qcow2CheckStats = CheckStats;

export interface Qcow2CheckResult extends DriverCheckResult {
  checkErrors: number;
  stats: Qcow2CheckStats;
}

/** A 64-bit entry as [hi, lo] words. */
function entryAt(bytes: Uint8Array, index: number): [number, number] {
  const dv = new DataView(bytes.buffer, bytes.byteOffset + index * 8, 8);
  return [dv.getUint32(0), dv.getUint32(4)];
}
const hex = (hi: number, lo: number) =>
  hi === 0 ? lo.toString(16) : hi.toString(16) + lo.toString(16).padStart(8, '0');
/** Bits 9..55 of an entry: L1E/L2E_OFFSET_MASK. */
const offsetOf = (hi: number, lo: number) => (hi & 0x00ffffff) * TWO32 + (lo - (lo % 512));

/**
 * The computed refcounts (QEMU's in-memory refcount table), growable, in entries as wide as the
 * image's (2 bytes per cluster for the default 16-bit refcounts, as QEMU's array).
 */
class Counts {
  a: Uint8Array | Uint16Array | Uint32Array | Float64Array;
  size: number;
  constructor(
    size: number,
    private readonly order: number,
  ) {
    this.size = size;
    this.a = this.make(Math.max(size, 1));
  }
  private make(n: number): Uint8Array | Uint16Array | Uint32Array | Float64Array {
    if (this.order <= 3) return new Uint8Array(n);
    if (this.order === 4) return new Uint16Array(n);
    if (this.order === 5) return new Uint32Array(n);
    return new Float64Array(n);
  }
  grow(n: number): void {
    if (n > this.a.length) {
      const b = this.make(Math.max(n, this.a.length * 2));
      b.set(this.a);
      this.a = b;
    }
    this.size = Math.max(this.size, n);
  }
  get(i: number): number {
    return i < this.a.length ? this.a[i]! : 0;
  }
  set(i: number, v: number): void {
    this.grow(i + 1);
    this.a[i] = v;
  }
}

class Checker {
  readonly cs: number;
  readonly bits: number;
  readonly order: number;
  readonly rbSize: number;
  readonly max: number;
  readonly out: string[] = [];
  corruptions = 0;
  leaks = 0;
  corruptionsFixed = 0;
  leaksFixed = 0;
  checkErrors = 0;
  stats: Qcow2CheckStats;
  fileSize = 0;
  reftable: number[] = [];
  reftableOffset: number;
  reftableClusters: number;
  readonly refblocks = new Map<number, Uint8Array>();
  snapshots: Qcow2Snapshot[] = [];
  snapshotsSize = 0;
  l1: Uint8Array = new Uint8Array(0);
  /** qcow2_signal_corruption has spoken (it speaks once). */
  signalled = false;
  /** A repair was asked: the storage is writable. */
  writable = false;

  constructor(
    readonly storage: Storage,
    readonly h: Qcow2Header,
  ) {
    this.cs = h.clusterSize;
    this.bits = h.clusterBits;
    this.order = h.refcountOrder;
    this.rbSize = refcountsPerBlock(h.clusterBits, h.refcountOrder);
    this.max = maxRefcount(h.refcountOrder);
    this.reftableOffset = h.refcountTableOffset;
    this.reftableClusters = h.refcountTableClusters;
    this.stats = {
      totalClusters: Math.ceil(h.size / h.clusterSize),
      allocatedClusters: 0,
      fragmentedClusters: 0,
      compressedClusters: 0,
      imageEndOffset: 0,
    };
  }

  async read(offset: number, length: number): Promise<Uint8Array> {
    const b = new Uint8Array(length);
    await readZeroFilled(this.storage, offset, b);
    return b;
  }

  async load(): Promise<void> {
    this.fileSize = await this.storage.size();
    const rt = await this.read(this.reftableOffset, this.reftableClusters * this.cs);
    this.reftable = [];
    for (let i = 0; i < rt.length / 8; i++) {
      const [hi, lo] = entryAt(rt, i);
      this.reftable.push(hi * TWO32 + lo);
    }
    this.l1 = await this.read(this.h.l1TableOffset, this.h.l1Size * 8);
  }

  /** The on-disk refcount of cluster `i` when its refcount block is in memory (or there is none); else null. */
  cachedRefcount(i: number): number | null {
    const ti = Math.floor(i / this.rbSize);
    if (ti >= this.reftable.length) return 0;
    const e = this.reftable[ti]!;
    const off = e - (e % 512);
    if (off === 0) return 0;
    const block = this.refblocks.get(off);
    return block === undefined ? null : readRefcount(block, i % this.rbSize, this.order);
  }

  /** qcow2_get_refcount: the on-disk refcount of cluster `i` (undefined: the refcount block is unreadable). */
  async refcount(i: number): Promise<number | undefined> {
    const cached = this.cachedRefcount(i);
    if (cached !== null) return cached;
    const ti = Math.floor(i / this.rbSize);
    if (ti >= this.reftable.length) return 0;
    const e = this.reftable[ti]!;
    const off = e - (e % 512);
    if (off === 0) return 0;
    if (off % this.cs !== 0) {
      if (!this.signalled) {
        // qcow2_signal_corruption: a writable image is marked corrupt, a read-only one only reported.
        this.signalled = true;
        const what = `Refblock offset 0x${off.toString(16)} unaligned (reftable index: ${ti === 0 ? '0' : `0x${ti.toString(16)}`})`;
        this.out.push(
          this.writable
            ? `qcow2: Marking image as corrupt: ${what}; further corruption events will be suppressed`
            : `qcow2: Image is corrupt: ${what}; further non-fatal corruption events will be suppressed`,
        );
        if (this.writable) await setBits(this.storage, this.h, BigInt(INCOMPAT_CORRUPT));
      }
      return undefined;
    }
    let block = this.refblocks.get(off);
    if (block === undefined) {
      block = await this.read(off, this.cs);
      this.refblocks.set(off, block);
    }
    return readRefcount(block, i % this.rbSize, this.order);
  }

  /** qcow2_inc_refcounts_imrt. */
  inc(counts: Counts, offset: number, size: number): void {
    if (size <= 0) return;
    if (offset + size - this.fileSize >= this.cs) {
      this.out.push(
        `ERROR: counting reference for region exceeding the end of the file by one cluster or more: offset 0x${offset.toString(16)} size 0x${size.toString(16)}`,
      );
      this.corruptions++;
      return;
    }
    const first = Math.floor(offset / this.cs);
    const last = Math.floor((offset + size - 1) / this.cs);
    for (let k = first; k <= last; k++) {
      const rc = counts.get(k);
      if (rc === this.max) {
        this.out.push(`ERROR: overflow cluster offset=0x${(k * this.cs).toString(16)}`);
        this.out.push(
          'Use qemu-img amend to increase the refcount entry width or qemu-img convert to create a clean copy if the image cannot be opened for writing',
        );
        this.corruptions++;
        continue;
      }
      counts.set(k, rc + 1);
    }
  }

  /** check_refcounts_l2. */
  /** The last L2 table read (an L1 table may name one table many times: it is read once). */
  private lastL2: { offset: number; bytes: Uint8Array } | undefined;

  async readL2(offset: number): Promise<Uint8Array> {
    if (this.lastL2?.offset !== offset) this.lastL2 = { offset, bytes: await this.read(offset, this.cs) };
    return this.lastL2.bytes;
  }

  async checkL2(counts: Counts, l2Offset: number, frag: boolean): Promise<void> {
    const l2 = await this.readL2(l2Offset);
    const dv = new DataView(l2.buffer, l2.byteOffset, l2.byteLength);
    // Per table, as QEMU's check_refcounts_l2: the first cluster of a table is never "fragmented".
    const state = { next: 0 };
    const n = this.cs / 8;
    const x = 62 - (this.bits - 8);
    for (let i = 0; i < n; i++) {
      let hi = dv.getUint32(8 * i);
      const lo = dv.getUint32(8 * i + 4);
      if (hi === 0 && lo === 0) continue;
      if ((hi & 0x40000000) !== 0) {
        if ((hi & 0x80000000) !== 0) {
          const big = (BigInt(hi & 0x3fffffff) << 32n) | BigInt(lo);
          const coff = Number(big & ((1n << BigInt(x)) - 1n));
          this.out.push(`ERROR: coffset=0x${coff.toString(16)}: copied flag must never be set for compressed clusters`);
          hi &= 0x7fffffff;
          this.corruptions++;
        }
        const big = (BigInt(hi >>> 0) << 32n) | BigInt(lo);
        const coff = Number(big & ((1n << BigInt(x)) - 1n));
        const sectors = Number((big >> BigInt(x)) & ((1n << BigInt(this.bits - 8)) - 1n)) + 1;
        // qcow2_parse_compressed_l2_entry: the payload runs to the end of its last 512-byte sector.
        const csize = sectors * 512 - (coff % 512);
        this.inc(counts, coff, csize);
        if (frag) {
          this.stats.allocatedClusters++;
          this.stats.compressedClusters++;
          this.stats.fragmentedClusters++;
        }
        continue;
      }
      // Standard cluster descriptor: reserved bits 1..8 and 56..61.
      if ((lo & 0x1fe) !== 0 || (hi & 0x3f000000) !== 0) {
        this.out.push(`ERROR found l2 entry with reserved bits set: ${hex(hi, lo)}`);
        this.corruptions++;
      }
      const offset = offsetOf(hi, lo);
      const zero = (lo & 1) !== 0;
      if (offset === 0) continue; // unallocated or plain zero
      if (offset % this.cs !== 0) {
        this.corruptions++;
        if (zero) {
          this.out.push(
            `ERROR offset=${offset.toString(16)}: Preallocated cluster is not properly aligned; L2 entry corrupted.`,
          );
        } else {
          this.out.push(
            `ERROR offset=${offset.toString(16)}: Data cluster is not properly aligned; L2 entry corrupted.`,
          );
        }
      }
      if (frag) {
        this.stats.allocatedClusters++;
        if (state.next !== 0 && offset !== state.next) this.stats.fragmentedClusters++;
        state.next = offset + this.cs;
      }
      this.inc(counts, offset, this.cs);
    }
  }

  /** check_refcounts_l1. */
  async checkL1(counts: Counts, l1Offset: number, l1Size: number, frag: boolean): Promise<void> {
    if (l1Size === 0) return;
    this.inc(counts, l1Offset, l1Size * 8);
    const l1 = await this.read(l1Offset, l1Size * 8);
    for (let i = 0; i < l1Size; i++) {
      const [hi, lo] = entryAt(l1, i);
      if (hi === 0 && lo === 0) continue;
      if ((hi & 0x7f000000) !== 0 || (lo & 0x1ff) !== 0) {
        this.out.push(`ERROR found L1 entry with reserved bits set: ${hex(hi, lo)}`);
        this.corruptions++;
      }
      const l2 = offsetOf(hi, lo);
      this.inc(counts, l2, this.cs);
      if (l2 % this.cs !== 0) {
        this.out.push(`ERROR l2_offset=${l2.toString(16)}: Table is not cluster aligned; L1 entry corrupted`);
        this.corruptions++;
      }
      await this.checkL2(counts, l2, frag);
    }
  }

  /** calculate_refcounts; returns whether the refcount structure needs a rebuild. */
  async calculate(counts: Counts, fixErrors: boolean): Promise<boolean> {
    let rebuild = false;
    this.inc(counts, 0, this.cs);
    await this.checkL1(counts, this.h.l1TableOffset, this.h.l1Size, true);
    for (const sn of this.snapshots) {
      if (sn.l1TableOffset % this.cs !== 0) {
        this.out.push(
          `ERROR snapshot ${sn.id} (${sn.name}) l1_offset=0x${sn.l1TableOffset.toString(16)}: L1 table is not cluster aligned; snapshot table entry corrupted`,
        );
        this.corruptions++;
        continue;
      }
      if (sn.l1Size * 8 > MAX_L1_BYTES) {
        this.out.push(
          `ERROR snapshot ${sn.id} (${sn.name}) l1_size=0x${sn.l1Size.toString(16)}: L1 table is too large; snapshot table entry corrupted`,
        );
        this.corruptions++;
        continue;
      }
      await this.checkL1(counts, sn.l1TableOffset, sn.l1Size, false);
    }
    this.inc(counts, this.h.snapshotsOffset, this.snapshotsSize);
    this.inc(counts, this.reftableOffset, this.reftable.length * 8);
    // check_refblocks
    for (let i = 0; i < this.reftable.length; i++) {
      const e = this.reftable[i]!;
      const offset = e - (e % 512);
      const cluster = Math.floor(offset / this.cs);
      if (e % 512 !== 0) {
        this.out.push(`ERROR refcount table entry ${i} has reserved bits set`);
        this.corruptions++;
        rebuild = true;
        continue;
      }
      if (offset % this.cs !== 0) {
        this.out.push(`ERROR refcount block ${i} is not cluster aligned; refcount table entry corrupted`);
        this.corruptions++;
        rebuild = true;
        continue;
      }
      if (cluster >= counts.size) {
        this.corruptions++;
        this.out.push(`${fixErrors ? 'Repairing' : 'ERROR'} refcount block ${i} is outside image`);
        if (fixErrors) {
          // Grow the file to hold the block (it reads as zeros), as QEMU does.
          await truncateTo(this.storage, offset + this.cs);
          this.fileSize = await this.storage.size();
          counts.grow(Math.ceil(this.fileSize / this.cs));
          this.corruptions--;
          this.corruptionsFixed++;
          this.inc(counts, offset, this.cs);
        }
        continue;
      }
      if (offset !== 0) {
        this.inc(counts, offset, this.cs);
        if (counts.get(cluster) !== 1) {
          this.out.push(`ERROR refcount block ${i} refcount=${counts.get(cluster)}`);
          this.corruptions++;
          rebuild = true;
        }
      }
    }
    return rebuild;
  }

  /** update_refcount of one cluster by `delta` on disk (the block exists: its refcount is nonzero). */
  async setRefcount(i: number, value: number): Promise<boolean> {
    const ti = Math.floor(i / this.rbSize);
    const e = this.reftable[ti] ?? 0;
    const off = e - (e % 512);
    if (off === 0 || off % this.cs !== 0) return false;
    const block = this.refblocks.get(off) ?? (await this.read(off, this.cs));
    this.refblocks.set(off, block);
    writeRefcount(block, i % this.rbSize, this.order, value);
    await writeTo(this.storage, off, block);
    return true;
  }

  /** compare_refcounts; returns [rebuild, highest cluster]. */
  async compare(counts: Counts, fixLeaks: boolean, fixErrors: boolean): Promise<[boolean, number]> {
    let rebuild = false;
    let highest = 0;
    const n = Math.max(counts.size, Math.ceil(this.fileSize / this.cs));
    for (let i = 0; i < n; i++) {
      const r1 = this.cachedRefcount(i) ?? (await this.refcount(i));
      if (r1 === undefined) {
        this.out.push(`Can't get refcount for cluster ${i}: Input/output error`);
        this.checkErrors++;
        continue;
      }
      const r2 = counts.get(i);
      if (r1 > 0 || r2 > 0) highest = i;
      if (r1 === r2) continue;
      let fix: 'leaks' | 'corruptions' | undefined;
      if (r1 === 0) rebuild = true;
      else if (r1 > r2 && fixLeaks) fix = 'leaks';
      else if (r1 < r2 && fixErrors) fix = 'corruptions';
      this.out.push(`${fix ? 'Repairing' : r1 < r2 ? 'ERROR' : 'Leaked'} cluster ${i} refcount=${r1} reference=${r2}`);
      if (fix && r2 <= this.max && (await this.setRefcount(i, r2))) {
        if (fix === 'leaks') this.leaksFixed++;
        else this.corruptionsFixed++;
        continue;
      }
      if (r1 < r2) this.corruptions++;
      else this.leaks++;
    }
    return [rebuild, highest];
  }

  /** check_oflag_copied. */
  async checkCopied(fixErrors: boolean, fixLeaks: boolean): Promise<void> {
    const repair = fixErrors || (fixLeaks && !this.checkErrors && !this.corruptions && !this.leaks);
    for (let i = 0; i < this.h.l1Size; i++) {
      let [hi, lo] = entryAt(this.l1, i);
      const l2Offset = offsetOf(hi, lo);
      if (l2Offset === 0) continue;
      const rc = await this.refcount(Math.floor(l2Offset / this.cs));
      if (rc !== undefined && (rc === 1) !== ((hi & 0x80000000) !== 0)) {
        this.corruptions++;
        this.out.push(
          `${repair ? 'Repairing' : 'ERROR'} OFLAG_COPIED L2 cluster: l1_index=${i} l1_entry=${hex(hi, lo)} refcount=${rc}`,
        );
        if (repair) {
          hi = rc === 1 ? (hi | 0x80000000) >>> 0 : hi & 0x7fffffff;
          const dv = new DataView(this.l1.buffer, this.l1.byteOffset + i * 8, 8);
          dv.setUint32(0, hi);
          await writeTo(this.storage, this.h.l1TableOffset + i * 8, this.l1.subarray(i * 8, i * 8 + 8));
          this.corruptions--;
          this.corruptionsFixed++;
        }
      }
      // Repairs below change this buffer and write it: the cached copy stays the file's.
      const l2 = await this.readL2(l2Offset);
      let dirty = 0;
      const l2v = new DataView(l2.buffer, l2.byteOffset, l2.byteLength);
      for (let j = 0; j < this.cs / 8; j++) {
        const eh = l2v.getUint32(8 * j);
        const el = l2v.getUint32(8 * j + 4);
        if (eh === 0 && el === 0) continue;
        if ((eh & 0x40000000) !== 0) continue; // compressed
        const data = offsetOf(eh, el);
        if (data === 0) continue;
        const r = this.cachedRefcount(Math.floor(data / this.cs)) ?? (await this.refcount(Math.floor(data / this.cs)));
        if (r === undefined) continue;
        if ((r === 1) !== ((eh & 0x80000000) !== 0)) {
          this.corruptions++;
          this.out.push(
            `${repair ? 'Repairing' : 'ERROR'} OFLAG_COPIED data cluster: l2_entry=${hex(eh, el)} refcount=${r}`,
          );
          if (repair) {
            const dv = new DataView(l2.buffer, j * 8, 8);
            dv.setUint32(0, r === 1 ? (eh | 0x80000000) >>> 0 : eh & 0x7fffffff);
            dirty++;
          }
        }
      }
      if (dirty > 0) {
        await writeTo(this.storage, l2Offset, l2);
        this.corruptions -= dirty;
        this.corruptionsFixed += dirty;
      }
    }
  }

  /** alloc_clusters_imrt. */
  allocImrt(counts: Counts, n: number, firstFree: { v: number }): number {
    let cluster = firstFree.v;
    let firstGap = true;
    let free = 0;
    for (; cluster < counts.size && free < n; cluster++) {
      if (!counts.get(cluster)) {
        free++;
        if (firstGap) {
          firstFree.v = cluster;
          firstGap = false;
        }
      } else if (free) {
        free = 0;
      }
    }
    if (free < n) counts.grow(cluster + n - free);
    cluster -= free;
    for (let i = 0; i < n; i++) counts.set(cluster + i, 1);
    return cluster * this.cs;
  }

  /** rebuild_refcounts_write_refblocks; returns whether the table grew. */
  async writeRefblocks(
    counts: Counts,
    first: number,
    endCluster: number,
    table: { entries: number[] },
  ): Promise<boolean> {
    let firstFree = { v: 0 };
    let grown = false;
    let end = endCluster;
    for (let cluster = first; cluster < end; cluster++) {
      if (!counts.get(cluster)) continue;
      const index = Math.floor(cluster / this.rbSize);
      const start = index * this.rbSize;
      let off: number;
      if (table.entries.length > index && table.entries[index]) {
        off = table.entries[index]!;
      } else {
        if (firstFree.v < start) firstFree = { v: start };
        off = this.allocImrt(counts, 1, firstFree);
        if (off / this.cs >= end) end = off / this.cs + 1;
        if (table.entries.length <= index) {
          const want = Math.ceil(((index + 1) * 8) / this.cs) * (this.cs / 8);
          while (table.entries.length < want) table.entries.push(0);
          grown = true;
        }
        table.entries[index] = off;
      }
      const block = new Uint8Array(this.cs);
      for (let k = 0; k < this.rbSize; k++) {
        const v = counts.get(start + k);
        if (v) writeRefcount(block, k, this.order, Math.min(v, this.max));
      }
      await writeTo(this.storage, off, block);
      this.refblocks.set(off, block);
      cluster = start + this.rbSize - 1;
    }
    return grown;
  }

  /** rebuild_refcount_structure. */
  async rebuild(counts: Counts): Promise<void> {
    this.refblocks.clear();
    const table = { entries: [] as number[] };
    await this.writeRefblocks(counts, 0, counts.size, table);
    let offset = -1;
    let clusters = 0;
    for (let changed = true; changed; ) {
      clusters = Math.ceil((table.entries.length * 8) / this.cs);
      offset = this.allocImrt(counts, clusters, { v: 0 });
      const s = offset / this.cs;
      changed = await this.writeRefblocks(counts, s, s + clusters, table);
      if (changed) for (let c = s; c < s + clusters; c++) counts.set(c, 0);
    }
    const bytes = new Uint8Array(table.entries.length * 8);
    const dv = new DataView(bytes.buffer);
    table.entries.forEach((e, i) => {
      dv.setUint32(i * 8, Math.floor(e / TWO32));
      dv.setUint32(i * 8 + 4, e >>> 0);
    });
    await writeTo(this.storage, offset, bytes);
    const hdr = new Uint8Array(12);
    const hv = new DataView(hdr.buffer);
    hv.setUint32(0, Math.floor(offset / TWO32));
    hv.setUint32(4, offset >>> 0);
    hv.setUint32(8, clusters);
    await writeTo(this.storage, 48, hdr);
    await this.storage.flush?.();
    this.reftable = table.entries;
    this.reftableOffset = offset;
    this.reftableClusters = clusters;
    this.fileSize = await this.storage.size();
  }
}

/** Sets incompatible bits in the header (v3 only). */
async function setBits(storage: Storage, h: Qcow2Header, bits: bigint): Promise<void> {
  if (h.version < 3 || (h.incompatibleFeatures & bits) === bits) return;
  const next = h.incompatibleFeatures | bits;
  const b = new Uint8Array(8);
  new DataView(b.buffer).setBigUint64(0, next);
  await writeTo(storage, 72, b);
  h.incompatibleFeatures = next;
}

/** Clears incompatible bits (dirty, corrupt) in the header, as qcow2_mark_clean/mark_consistent. */
async function clearBits(storage: Storage, h: Qcow2Header, bits: bigint): Promise<void> {
  if (h.version < 3 || (h.incompatibleFeatures & bits) === 0n) return;
  const next = h.incompatibleFeatures & ~bits;
  const b = new Uint8Array(8);
  new DataView(b.buffer).setBigUint64(0, next);
  await writeTo(storage, 72, b);
  h.incompatibleFeatures = next;
}

/** qcow2_co_check_locked: the whole check (and repair) of one image. */
export async function checkQcow2(
  storage: Storage,
  header: Qcow2Header,
  repair: RepairRequest,
): Promise<Qcow2CheckResult> {
  const c = new Checker(storage, header);
  const fixErrors = repair.corruptions;
  const fixLeaks = repair.leaks || repair.corruptions;
  c.writable = fixLeaks;
  await c.load();
  // QEMU's limit: the in-memory refcount array is indexed by an int.
  if (Math.ceil(c.fileSize / c.cs) > 2 ** 31 - 1) {
    c.out.push('ERROR the image file has too many clusters to check');
    c.checkErrors++;
    return finish(c, 0);
  }
  try {
    const table = await readSnapshotTable(storage, header, c.fileSize);
    c.snapshots = table.snapshots;
    c.snapshotsSize = table.size;
  } catch (err) {
    c.out.push(`ERROR reading the snapshot table: ${(err as Error).message}`);
    c.corruptions++;
  }
  let counts = new Counts(Math.ceil(c.fileSize / c.cs), c.order);
  let rebuild = await c.calculate(counts, fixErrors);
  const pre = { corruptions: c.corruptions, leaks: c.leaks, checkErrors: c.checkErrors, out: c.out.length };
  let [r, highest] = await c.compare(counts, false, false);
  rebuild ||= r;
  if (rebuild && fixErrors) {
    const old = { corruptions: c.corruptions, leaks: c.leaks };
    c.out.push('Rebuilding refcount structure');
    await c.rebuild(counts);
    c.corruptions = 0;
    c.leaks = 0;
    counts = new Counts(Math.ceil(c.fileSize / c.cs), c.order);
    const stats = { ...c.stats };
    await c.calculate(counts, false);
    c.stats = stats;
    const saved = { corruptions: c.corruptions, leaks: c.leaks, cf: c.corruptionsFixed, lf: c.leaksFixed };
    c.corruptions = 0;
    c.leaks = 0;
    [r, highest] = await c.compare(counts, true, false);
    if (r) c.out.push('ERROR rebuilt refcount structure is still broken');
    const fresh = c.leaks;
    c.corruptions = saved.corruptions;
    c.leaks = saved.leaks;
    c.corruptionsFixed = saved.cf;
    c.leaksFixed = saved.lf;
    if (c.corruptions < old.corruptions) c.corruptionsFixed += old.corruptions - c.corruptions;
    if (c.leaks < old.leaks) c.leaksFixed += old.leaks - c.leaks;
    c.leaks += fresh;
  } else if (fixLeaks || fixErrors) {
    if (rebuild) {
      c.out.push('ERROR need to rebuild refcount structures');
      c.checkErrors++;
      return finish(c, highest);
    }
    if (c.leaks || c.corruptions) {
      c.corruptions = pre.corruptions;
      c.leaks = pre.leaks;
      c.checkErrors = pre.checkErrors;
      [, highest] = await c.compare(counts, fixLeaks, fixErrors);
    }
  }
  await c.checkCopied(fixErrors, fixLeaks);
  if ((fixLeaks || fixErrors) && c.checkErrors === 0 && c.corruptions === 0) {
    await clearBits(storage, header, BigInt(INCOMPAT_DIRTY | INCOMPAT_CORRUPT));
  }
  return finish(c, highest);
}

function finish(c: Checker, highest: number): Qcow2CheckResult {
  c.stats.imageEndOffset = (highest + 1) * c.cs;
  return {
    corruptions: c.corruptions,
    leaks: c.leaks,
    corruptionsFixed: c.corruptionsFixed,
    leaksFixed: c.leaksFixed,
    checkErrors: c.checkErrors,
    messages: c.out,
    stats: c.stats,
  };
}

/** Checks (and repairs) the qcow2 image in `storage`, reading its header first. */
export async function checkQcow2Storage(storage: Storage, repair: RepairRequest): Promise<Qcow2CheckResult> {
  const fileSize = await storage.size();
  const head = new Uint8Array(Math.min(Math.max(fileSize, 0), 2 * 1024 * 1024));
  await readZeroFilled(storage, 0, head);
  const header = parseHeader(head, fileSize, { path: storage.path, driver: 'qcow2' });
  return checkQcow2(storage, header, repair);
}
