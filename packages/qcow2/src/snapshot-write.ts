/**
 * qcow2 internal snapshots, write side: create, apply (revert to) and delete, with QEMU 7.2's
 * semantics (block/qcow2-snapshot.c, qcow2_update_snapshot_refcount): a snapshot is a copy of the
 * active L1 table sharing every L2 table and data cluster with it; each L1 table that reaches a
 * cluster through an L2 table counts once in its refcount, and COPIED (bit 63) marks the active
 * entries whose refcount is exactly 1 (writable in place).
 *
 * Every change goes through the image's own caches (`SnapshotEngine`), with no request in flight,
 * in an order chosen for crashes:
 * - create: the active tree's COPIED bits are cleared first (L2 tables, then L1), then the
 *   snapshot's L1 copy is written, the refcounts raised, the new snapshot table written, and only
 *   then the header names it (one sector write); the old table is freed last.
 * - apply: the snapshot's clusters gain a reference first; the new active L1 (COPIED clear: every
 *   cluster it reaches is shared with the snapshot) is written to new clusters and named by the
 *   header in one write (size, l1_size, l1_table_offset); the old active tree loses its references
 *   afterwards. A crash at any point leaves leaks only.
 * - delete: the table without the entry is named by the header first; then the snapshot's
 *   references go, then its L1 table, then COPIED is set where a refcount came down to 1.
 * Create and delete must flip a COPIED bit and a refcount that live in different clusters; no
 * order makes that atomic (QEMU's neither). The order here chooses the harmless side: a crash
 * between the two leaves a bit clear on a cluster whose refcount is 1 (`qemu-img check` reports an
 * OFLAG_COPIED error, writers copy the cluster needlessly, `check -r all` sets the bit), never a
 * bit set on a shared cluster, which would let a write land in a snapshot.
 */
import { BlockError, flushStorage, readZeroFilled, writeTo, type Storage } from '@blk/core/portable';
import { MAX_L1_BYTES, MAX_SNAPSHOTS, type Qcow2Header } from './header.js';
import { compressedDescriptorBits, l1EntriesFor, maxRefcount } from './layout.js';
import type { Refcounts } from './refcount.js';
import { EXTRA_BYTES, encodeSnapshotTable, type Qcow2Snapshot, type SnapshotTable } from './snapshots.js';

/** The image's caches and state, as `Qcow2Image.snapshotEngine()` hands them out. */
export interface SnapshotEngine {
  readonly storage: Storage;
  readonly header: Qcow2Header;
  readonly rc: Refcounts;
  /** cache=unsafe: no storage flushes. */
  readonly unsafe: boolean;
  /** Before the first change: the dirty bit (lazy refcounts) and autoclear bits, as for a write. */
  prepare(): Promise<void>;
  /** Every completed write durable, deferred frees applied. */
  flush(): Promise<void>;
  /** Runs `fn` (synchronously) on the L2 table at `offset`; `dirty` marks bytes it changed. */
  useL2<T>(offset: number, fn: (table: DataView, dirty: (lo: number, hi: number) => void) => T): Promise<T>;
  /** Writes changed L2 tables (after the refcount blocks, as every L2 write-back). */
  writeBackL2(): Promise<void>;
  /** The active L1 table in memory (header.l1Size entries); changes to it are the caller's to write. */
  activeL1(): Uint8Array;
  writeHeader(offset: number, bytes: Uint8Array): Promise<void>;
  /** Clusters were allocated: the image's idea of the file's end follows. */
  allocated(): void;
  /** The header names a new active L1 table (header.l1Size/l1TableOffset updated): `l1` is it, `size` the disk size. */
  setActive(l1: Uint8Array, size: number): void;
}

/** The snapshot list shared with `info` (updated in place). */
export interface SnapshotState {
  table: SnapshotTable;
}

const COPIED_HI = 0x80000000;
const COMPRESSED_HI = 0x40000000;
const TWO32 = 2 ** 32;

/** One reference an L1 table holds: an L2 table, and the host clusters its entries name. */
interface TableRefs {
  l1Index: number;
  l2: number;
  /** Host clusters, one per reference (a compressed payload names each cluster it touches). */
  data: number[];
}

export class SnapshotWriter {
  private readonly cs: number;
  private readonly where: { path: string; driver: 'qcow2' };

  constructor(
    private readonly e: SnapshotEngine,
    private readonly state: SnapshotState,
  ) {
    this.cs = e.header.clusterSize;
    this.where = { path: e.storage.path, driver: 'qcow2' };
  }

  private corrupt(message: string, offset?: number): BlockError {
    return new BlockError('invalid-header', `qcow2 metadata is corrupt: ${message}`, {
      ...this.where,
      field: 'snapshots',
      ...(offset !== undefined ? { offset } : {}),
    });
  }

  private async sync(): Promise<void> {
    if (!this.e.unsafe) await flushStorage(this.e.storage);
  }

  /** Refcount blocks (and new table entries) on disk, then a flush. */
  private async syncRefcounts(): Promise<void> {
    await this.e.rc.writeBack();
    await this.sync();
  }

  /** The L2 table an L1 entry names (0: none), checked. */
  private l2Of(l1: DataView, i: number): number {
    const hi = l1.getUint32(i * 8) & 0x00ffffff;
    const lo = l1.getUint32(i * 8 + 4);
    const offset = hi * TWO32 + (lo - (lo % 512));
    if (offset !== 0 && offset % this.cs !== 0)
      throw this.corrupt(`L2 table offset 0x${offset.toString(16)} unaligned (L1 index ${i})`, offset);
    return offset;
  }

  /**
   * Every reference the tree of `l1` holds, checked as `qemu-img check` would refuse them: an L2
   * table per L1 entry, and per L2 entry its host cluster (normal and preallocated zero clusters) or
   * the clusters its compressed payload touches.
   */
  private async references(l1Bytes: Uint8Array): Promise<TableRefs[]> {
    const l1 = new DataView(l1Bytes.buffer, l1Bytes.byteOffset, l1Bytes.byteLength);
    const cs = this.cs;
    const { offsetBits, sectorBits } = compressedDescriptorBits(this.e.header.clusterBits);
    const out: TableRefs[] = [];
    for (let i = 0; i < l1Bytes.length / 8; i++) {
      const l2 = this.l2Of(l1, i);
      if (l2 === 0) continue;
      const data = await this.e.useL2(l2, (t) => {
        const refs: number[] = [];
        for (let j = 0; j < cs / 8; j++) {
          const hi = t.getUint32(j * 8);
          const lo = t.getUint32(j * 8 + 4);
          if ((hi & COMPRESSED_HI) !== 0) {
            const desc = (BigInt(hi >>> 0) << 32n) | BigInt(lo >>> 0);
            const coffset = Number(desc & ((1n << BigInt(offsetBits)) - 1n));
            const sectors = Number((desc >> BigInt(offsetBits)) & ((1n << BigInt(sectorBits)) - 1n)) + 1;
            const csize = sectors * 512 - (coffset % 512);
            if (coffset === 0) throw this.corrupt(`compressed cluster at offset 0 (L2 table ${l2})`, l2);
            for (let c = Math.floor(coffset / cs); c <= Math.floor((coffset + csize - 1) / cs); c++) refs.push(c);
            continue;
          }
          const host = (hi & 0x00ffffff) * TWO32 + (lo - (lo % 512));
          if (host === 0) continue; // unallocated, or a zero cluster without a preallocated one
          if ((lo & 0x1fe) !== 0 || (hi & 0x3f000000) !== 0 || host % cs !== 0) {
            throw this.corrupt(`invalid L2 entry ${j} in the table at 0x${l2.toString(16)}`, l2 + j * 8);
          }
          refs.push(host / cs);
        }
        return refs;
      });
      out.push({ l1Index: i, l2, data });
    }
    return out;
  }

  /**
   * Refuses, before anything changes, a tree whose clusters cannot take one more reference each
   * (refcount_bits=1 images: a cluster in use already has the largest refcount; QEMU fails the
   * same request with EINVAL after changing some refcounts). A cluster's refcount counts every
   * reference the tree holds to it, so a cluster the tree names n times has a refcount of at least
   * n: only clusters above half the largest refcount can overflow by repeats, and only those are
   * counted (not a map of the whole image).
   */
  private async checkRoom(refs: readonly TableRefs[]): Promise<void> {
    const max = maxRefcount(this.e.header.refcountOrder);
    const high = new Map<number, { now: number; adds: number }>();
    const visit = async (c: number) => {
      const seen = high.get(c);
      if (seen) {
        seen.adds++;
        if (seen.now + seen.adds > max) this.refuseRoom(c, max);
        return;
      }
      const now = await this.e.rc.get(c);
      if (now === 0) throw this.corrupt(`cluster ${c} is in use but its refcount is 0`, c * this.cs);
      if (now + 1 > max) this.refuseRoom(c, max);
      if (now * 2 > max) high.set(c, { now, adds: 1 });
    };
    for (const t of refs) {
      await visit(t.l2 / this.cs);
      for (const c of t.data) await visit(c);
    }
  }

  private refuseRoom(c: number, max: number): never {
    throw new BlockError(
      'invalid-argument',
      `the refcount of cluster ${c} would exceed ${max} (refcount_bits=${2 ** this.e.header.refcountOrder})`,
      { ...this.where, offset: c * this.cs, field: 'refcount_bits', code: 'EINVAL' },
    );
  }

  private async addAll(refs: readonly TableRefs[], delta: 1 | -1): Promise<void> {
    const rc = this.e.rc;
    for (const t of refs) {
      for (const c of t.data) await rc.add(c, delta);
      await rc.add(t.l2 / this.cs, delta);
    }
  }

  /** Reads a snapshot's L1 table (checked against the file and QEMU's limit). */
  private async readL1(sn: Qcow2Snapshot): Promise<Uint8Array> {
    if (sn.l1Size * 8 > MAX_L1_BYTES) throw this.corrupt(`Snapshot L1 table too large (snapshot ${sn.id})`);
    const bytes = new Uint8Array(sn.l1Size * 8);
    if (bytes.length === 0) return bytes;
    const end = await this.e.storage.size();
    if (sn.l1TableOffset + bytes.length > end) {
      throw new BlockError('truncated', `Snapshot L1 table (snapshot ${sn.id}) lies past the end of the file`, {
        ...this.where,
        offset: sn.l1TableOffset,
      });
    }
    await readZeroFilled(this.e.storage, sn.l1TableOffset, bytes);
    return bytes;
  }

  /** Allocates contiguous clusters for `bytes`, writes them and makes them and their refcounts durable. */
  private async place(bytes: Uint8Array): Promise<number> {
    if (bytes.length === 0) return 0;
    const clusters = Math.ceil(bytes.length / this.cs);
    const at = (await this.e.rc.allocateRun(clusters)) * this.cs;
    this.e.allocated();
    const whole = new Uint8Array(clusters * this.cs);
    whole.set(bytes);
    await writeTo(this.e.storage, at, whole);
    await this.syncRefcounts();
    return at;
  }

  private async freeRun(offset: number, bytes: number): Promise<void> {
    if (offset === 0 || bytes === 0) return;
    for (let c = offset / this.cs; c < Math.ceil((offset + bytes) / this.cs); c++) await this.e.rc.add(c, -1);
  }

  /**
   * Writes `snapshots` as the new table and names it in the header (nb_snapshots and
   * snapshots_offset in one write), then frees the old table (QEMU's qcow2_write_snapshots).
   */
  private async writeTable(snapshots: Qcow2Snapshot[]): Promise<void> {
    const bytes = encodeSnapshotTable(snapshots);
    const at = snapshots.length === 0 ? 0 : await this.place(bytes);
    const fields = new Uint8Array(12);
    const dv = new DataView(fields.buffer);
    dv.setUint32(0, snapshots.length);
    dv.setBigUint64(4, BigInt(at));
    await this.e.writeHeader(60, fields);
    await this.sync();
    const h = this.e.header;
    const old = { offset: h.snapshotsOffset, size: this.state.table.size };
    h.nbSnapshots = snapshots.length;
    h.snapshotsOffset = at;
    // The reader's size for what it reads, the encoder's for what it wrote: both end in the same cluster.
    this.state.table = { snapshots, size: bytes.length };
    await this.freeRun(old.offset, old.size);
    await this.syncRefcounts();
  }

  /** Sets or clears COPIED on the active tree's entries as their refcounts say (QEMU's addend 0 pass). */
  private async markCopied(): Promise<void> {
    const l1Bytes = this.e.activeL1();
    const l1 = new DataView(l1Bytes.buffer, l1Bytes.byteOffset, l1Bytes.byteLength);
    const rc = this.e.rc;
    const refs = await this.references(l1Bytes);
    let l1Changed = false;
    for (const t of refs) {
      // The refcounts first (reading them may wait), then the table changes in one synchronous step.
      const counts = new Map<number, number>();
      for (const c of t.data) if (!counts.has(c)) counts.set(c, await rc.get(c));
      await this.e.useL2(t.l2, (tab, dirty) => {
        for (let j = 0; j < this.cs / 8; j++) {
          const hi = tab.getUint32(j * 8);
          const lo = tab.getUint32(j * 8 + 4);
          if ((hi & COMPRESSED_HI) !== 0) continue;
          const host = (hi & 0x00ffffff) * TWO32 + (lo - (lo % 512));
          if (host === 0) continue;
          const want = counts.get(host / this.cs) === 1 ? (hi | COPIED_HI) >>> 0 : (hi & ~COPIED_HI) >>> 0;
          if (want !== hi >>> 0) {
            tab.setUint32(j * 8, want);
            dirty(j * 8, j * 8 + 8);
          }
        }
      });
      const hi = l1.getUint32(t.l1Index * 8);
      const want = (await rc.get(t.l2 / this.cs)) === 1 ? (hi | COPIED_HI) >>> 0 : (hi & ~COPIED_HI) >>> 0;
      if (want !== hi >>> 0) {
        l1.setUint32(t.l1Index * 8, want);
        l1Changed = true;
      }
    }
    await this.e.writeBackL2();
    await this.sync();
    if (l1Changed) {
      await writeTo(this.e.storage, this.e.header.l1TableOffset, l1Bytes);
      await this.sync();
    }
  }

  /** Clears COPIED in every entry of the active tree (its clusters are about to be shared). */
  private async clearCopied(refs: readonly TableRefs[]): Promise<void> {
    const l1Bytes = this.e.activeL1();
    const l1 = new DataView(l1Bytes.buffer, l1Bytes.byteOffset, l1Bytes.byteLength);
    let l1Changed = false;
    for (const t of refs) {
      await this.e.useL2(t.l2, (tab, dirty) => clearTable(tab, this.cs, dirty));
      const hi = l1.getUint32(t.l1Index * 8);
      if ((hi & COPIED_HI) !== 0) {
        l1.setUint32(t.l1Index * 8, (hi & ~COPIED_HI) >>> 0);
        l1Changed = true;
      }
    }
    await this.e.writeBackL2();
    await this.sync();
    if (l1Changed) {
      await writeTo(this.e.storage, this.e.header.l1TableOffset, l1Bytes);
      await this.sync();
    }
  }

  /** qemu-img snapshot -c: a snapshot of the current state, under the next free numeric ID. */
  async create(name: string, dateSec: number, dateNsec: number): Promise<Qcow2Snapshot> {
    const e = this.e;
    const h = e.header;
    const list = this.state.table.snapshots;
    if (list.length >= MAX_SNAPSHOTS) {
      throw new BlockError('not-supported', 'Too many snapshots', { ...this.where, code: 'EFBIG' });
    }
    if (new TextEncoder().encode(name).length > 0xffff) {
      throw new BlockError('invalid-argument', 'the snapshot name is longer than 65535 bytes', {
        ...this.where,
        field: 'name',
      });
    }
    // QEMU's find_new_snapshot_id: one more than the largest ID read as a number (strtoul).
    let idMax = 0;
    for (const s of list) idMax = Math.max(idMax, Number.parseInt(s.id.trim(), 10) || 0);
    const id = String(idMax + 1);
    await e.prepare();
    await e.flush();
    const refs = await this.references(e.activeL1());
    await this.checkRoom(refs);
    await this.clearCopied(refs);
    const l1Offset = await this.place(e.activeL1().slice());
    await this.addAll(refs, 1);
    await this.syncRefcounts();
    const sn: Qcow2Snapshot = {
      offset: 0,
      l1TableOffset: l1Offset,
      l1Size: h.l1Size,
      id,
      name,
      dateSec,
      dateNsec,
      vmClockNsec: 0,
      vmStateSize: 0,
      diskSize: h.size,
      // What qemu-img snapshot -c records (no replay: icount 0).
      icount: 0,
      extraDataSize: EXTRA_BYTES,
    };
    await this.writeTable([...list, sn]);
    return sn;
  }

  /** qemu-img snapshot -a: the snapshot's state (and size) becomes the current one. */
  async apply(sn: Qcow2Snapshot): Promise<void> {
    const e = this.e;
    const h = e.header;
    const snL1 = await this.readL1(sn);
    const entries = Math.max(h.l1Size, sn.l1Size, l1EntriesFor(sn.diskSize, h.clusterBits));
    if (entries * 8 > MAX_L1_BYTES) {
      throw new BlockError('invalid-argument', 'Active L1 table too large', { ...this.where, code: 'EFBIG' });
    }
    await e.prepare();
    await e.flush();
    const snRefs = await this.references(snL1);
    await this.checkRoom(snRefs);
    const oldL1 = e.activeL1().slice();
    const oldRefs = await this.references(oldL1);
    // 1. The snapshot's clusters gain the reference the active table will hold; its L2 tables,
    //    about to be active, lose COPIED (every cluster they name stays shared with the snapshot).
    for (const t of snRefs) await e.useL2(t.l2, (tab, dirty) => clearTable(tab, this.cs, dirty));
    await this.addAll(snRefs, 1);
    await this.syncRefcounts();
    await e.writeBackL2();
    await this.sync();
    // 2. The new active L1 in new clusters, then the header names it and the size in one write.
    const l1 = new Uint8Array(entries * 8);
    l1.set(snL1);
    const dv = new DataView(l1.buffer);
    for (let i = 0; i < sn.l1Size; i++) dv.setUint32(i * 8, (dv.getUint32(i * 8) & ~COPIED_HI) >>> 0);
    const at = await this.place(l1);
    const fields = new Uint8Array(24);
    await readZeroFilled(e.storage, 24, fields);
    const fv = new DataView(fields.buffer);
    fv.setBigUint64(0, BigInt(sn.diskSize));
    fv.setUint32(12, entries);
    fv.setBigUint64(16, BigInt(at));
    await e.writeHeader(24, fields);
    await this.sync();
    const oldAt = h.l1TableOffset;
    const oldBytes = h.l1Size * 8;
    h.l1Size = entries;
    h.l1TableOffset = at;
    e.setActive(l1, sn.diskSize);
    // 3. The old active tree and its L1 table lose their references.
    await this.addAll(oldRefs, -1);
    await this.freeRun(oldAt, oldBytes);
    await this.syncRefcounts();
  }

  /** qemu-img snapshot -d: the entry leaves the table, then its clusters lose their references. */
  async delete(sn: Qcow2Snapshot): Promise<void> {
    const e = this.e;
    const snL1 = await this.readL1(sn);
    await e.prepare();
    await e.flush();
    const refs = await this.references(snL1);
    await this.writeTable(this.state.table.snapshots.filter((s) => s !== sn));
    await this.addAll(refs, -1);
    await this.freeRun(sn.l1TableOffset, sn.l1Size * 8);
    await this.syncRefcounts();
    // Clusters the active tree shared with the snapshot alone are its own again.
    await this.markCopied();
  }
}

/** Clears COPIED in every standard entry of an L2 table (compressed entries never carry it). */
function clearTable(tab: DataView, cs: number, dirty: (lo: number, hi: number) => void): void {
  for (let j = 0; j < cs / 8; j++) {
    const hi = tab.getUint32(j * 8);
    if ((hi & COPIED_HI) !== 0 && (hi & COMPRESSED_HI) === 0) {
      tab.setUint32(j * 8, (hi & ~COPIED_HI) >>> 0);
      dirty(j * 8, j * 8 + 8);
    }
  }
}
