/**
 * qemu-img amend -o refcount_bits=N (QEMU's qcow2_change_refcount_order): new refcount blocks and
 * a new refcount table of the new width are built from the old ones, then the header is switched
 * to them in one write.
 *
 * Crash ordering: the new structures go past everything the old ones count (the file's end), and
 * are written and flushed before the header names them. The old refcounts do not count them and
 * the new ones do not count the old structures, so either header leaves a consistent image:
 * before the switch the new clusters are free space past the end, after it the old table and
 * blocks are free holes (QEMU allocates through the old structures and frees them afterwards, so
 * a crash there leaks; here there is nothing to free).
 *
 * Every count must fit the new width: a narrower one is refused before anything is written, with
 * QEMU's words and the first cluster that does not fit, as walk_over_reftable.
 */
import { BlockError, flushStorage, readZeroFilled, writeTo, type Storage } from '@blk/core/portable';
import { MAX_REFTABLE_BYTES, type Qcow2Header } from './header.js';
import { maxRefcount, readRefcount, refcountBits, refcountsPerBlock, writeRefcount } from './layout.js';
import { readSnapshotTable } from './snapshots.js';

type Where = { path: string; driver: 'qcow2' };

/** Where the new structures are: the caller writes them into the header. */
export interface NewRefcountTable {
  tableOffset: number;
  tableClusters: number;
}

/** Refcount table entries: bits 9..63 hold the block's offset (the low bits are reserved). */
function tableEntry(dv: DataView, k: number): number {
  const hi = dv.getUint32(8 * k);
  const lo = dv.getUint32(8 * k + 4);
  return hi * 2 ** 32 + (lo - (lo % 512));
}

/** C's `%#x` (QEMU's PRIx64 with `#`): `0x` before every value but zero. */
function hexC(n: number): string {
  return n === 0 ? '0' : `0x${n.toString(16)}`;
}

/** L1 entries (active or a snapshot's): bits 9..55 hold an L2 table's offset. */
function l1Entry(dv: DataView, k: number): number {
  const hi = dv.getUint32(8 * k) & 0x00ff_ffff;
  const lo = dv.getUint32(8 * k + 4);
  return hi * 2 ** 32 + (lo - (lo % 512));
}

/**
 * The clusters QEMU's default overlap check guards besides the refcount structures: the header,
 * the active and every snapshot's L1 table, the L2 tables they name, the snapshot table. A hostile
 * image whose refcounts call one of them free (or whose refcount block is one of them) must not get
 * new refcount structures written over it.
 */
async function otherMetadata(storage: Storage, h: Qcow2Header, fileSize: number): Promise<Set<number>> {
  const cs = h.clusterSize;
  const out = new Set<number>([0]);
  const span = (offset: number, bytes: number) => {
    for (let c = Math.floor(offset / cs); c < Math.ceil((offset + bytes) / cs); c++) out.add(c);
  };
  const l1 = async (offset: number, entries: number) => {
    if (entries === 0) return;
    span(offset, entries * 8);
    const table = new Uint8Array(entries * 8);
    await readZeroFilled(storage, offset, table);
    const dv = new DataView(table.buffer);
    for (let k = 0; k < entries; k++) {
      const l2 = l1Entry(dv, k);
      if (l2 !== 0) span(l2, cs);
    }
  };
  await l1(h.l1TableOffset, h.l1Size);
  const snapshots = await readSnapshotTable(storage, h, fileSize);
  if (snapshots.size > 0) span(h.snapshotsOffset, snapshots.size);
  for (const sn of snapshots.snapshots) await l1(sn.l1TableOffset, sn.l1Size);
  return out;
}

/** The old structures, read one block at a time (refcounts are walked in cluster order). */
class OldRefcounts {
  private readonly cs: number;
  private readonly table: DataView;
  readonly entries: number;
  private cachedIndex = -1;
  private readonly block: Uint8Array;

  constructor(
    private readonly storage: Storage,
    h: Qcow2Header,
    table: Uint8Array,
    private readonly fileSize: number,
    private readonly where: Where,
  ) {
    this.cs = h.clusterSize;
    this.table = new DataView(table.buffer, table.byteOffset, table.byteLength);
    this.entries = table.length / 8;
    this.block = new Uint8Array(this.cs);
  }

  /** The block for table entry `k`'s offset (0: none), checked as QEMU checks it. */
  blockOffset(k: number): number {
    const offset = tableEntry(this.table, k);
    if (offset === 0) return 0;
    if (offset % this.cs !== 0) {
      throw new BlockError('invalid-header', 'Image is corrupt (unaligned refblock offset)', {
        ...this.where,
        field: 'refcount_table',
        offset,
      });
    }
    if (offset + this.cs > this.fileSize) {
      throw new BlockError('invalid-header', 'Image is corrupt (refcount block past the end of the file)', {
        ...this.where,
        field: 'refcount_table',
        offset,
      });
    }
    return offset;
  }

  /** Loads block `k` (which must have an offset) and returns its bytes. */
  async load(k: number): Promise<Uint8Array> {
    if (this.cachedIndex !== k) {
      await readZeroFilled(this.storage, this.blockOffset(k), this.block);
      this.cachedIndex = k;
    }
    return this.block;
  }
}

/**
 * Builds refcount structures of width 2^`order` for the image and writes them past its end,
 * durably; the header still names the old ones. Nothing is written when a count does not fit.
 */
export async function buildRefcountStructures(
  storage: Storage,
  h: Qcow2Header,
  order: number,
  where: Where,
): Promise<NewRefcountTable> {
  const cs = h.clusterSize;
  const fileSize = await storage.size();
  const oldTable = new Uint8Array(h.refcountTableClusters * cs);
  await readZeroFilled(storage, h.refcountTableOffset, oldTable);
  const old = new OldRefcounts(storage, h, oldTable, fileSize, where);
  const perOld = refcountsPerBlock(h.clusterBits, h.refcountOrder);
  const perNew = refcountsPerBlock(h.clusterBits, order);
  const newMax = maxRefcount(order);
  const newBits = refcountBits(order);

  // The old table and blocks: unused once the header names the new ones (counted 0 there).
  const oldStructures = new Set<number>();
  const tableFirst = h.refcountTableOffset / cs;
  for (let c = tableFirst; c < tableFirst + h.refcountTableClusters; c++) oldStructures.add(c);
  for (let k = 0; k < old.entries; k++) {
    const at = old.blockOffset(k);
    if (at !== 0) oldStructures.add(at / cs);
  }
  // Counts read from a cluster that is also an L1 or L2 table (or the header) are not counts: refuse
  // (QEMU's overlap check stops the same image half-way); and such clusters are never free space.
  const metadata = await otherMetadata(storage, h, fileSize);
  for (const c of oldStructures) {
    if (metadata.has(c)) {
      throw new BlockError('invalid-header', 'Image is corrupt (refcount structures overlap other metadata)', {
        ...where,
        field: 'refcount_table',
        offset: c * cs,
      });
    }
  }

  // Pass 1: every count fits (QEMU's message names the first that does not), which new blocks have
  // something to count, and the first free clusters inside the file (where the new structures go).
  const fileEnd = Math.ceil(fileSize / cs);
  const used = new Set<number>();
  const holes: number[] = [];
  const hole = (c: number) => {
    if (holes.length < MAX_HOLES && c < fileEnd && !oldStructures.has(c) && !metadata.has(c)) holes.push(c);
  };
  let last = -1;
  for (let k = 0; k < Math.max(old.entries, Math.ceil(fileEnd / perOld)); k++) {
    if (k >= old.entries || old.blockOffset(k) === 0) {
      for (let c = k * perOld; c < Math.min(fileEnd, (k + 1) * perOld) && holes.length < MAX_HOLES; c++) hole(c);
      continue;
    }
    const block = await old.load(k);
    for (let i = 0; i < perOld; i++) {
      const v = readRefcount(block, i, h.refcountOrder);
      const c = k * perOld + i;
      if (v === 0) {
        hole(c);
        continue;
      }
      if (newBits < 64 && v > newMax) {
        throw new BlockError(
          'invalid-argument',
          `Cannot decrease refcount entry width to ${newBits} bits: Cluster at offset ${hexC(c * cs)} has a refcount of ${v}`,
          { ...where, field: 'refcount_bits', offset: c * cs },
        );
      }
      if (oldStructures.has(c)) continue;
      used.add(Math.floor(c / perNew));
      last = Math.max(last, c);
    }
  }

  // Placement (first fit, as QEMU's allocator): the blocks in free clusters of the file, the table in
  // the first free run long enough, else past everything the old structures count. The clusters
  // used change which blocks are needed: repeat until the counts settle.
  let end = Math.max(fileEnd, last + 1);
  for (const c of oldStructures) end = Math.max(end, c + 1);
  let place = placeAt(used, holes, end, perNew, cs, true);
  for (let round = 0; !place.settled && round < 64; round++) place = placeAt(used, holes, end, perNew, cs, true, place);
  if (!place.settled) {
    // Past the end only: the counts grow until they settle.
    place = placeAt(used, [], end, perNew, cs, false);
    while (!place.settled) place = placeAt(used, [], end, perNew, cs, false, place);
  }
  const { indices, blockClusters, tableAt, tableClusters } = place;
  if (tableClusters * cs > MAX_REFTABLE_BYTES) {
    throw new BlockError(
      'not-supported',
      'This operation would make the refcount table grow beyond the maximum size supported by QEMU, aborting',
      { ...where, field: 'refcount_bits', code: 'ENOTSUP' },
    );
  }
  // The placed clusters by the new block that counts them.
  const placed = new Map<number, number[]>();
  const addPlaced = (c: number) => {
    const k = Math.floor(c / perNew);
    const list = placed.get(k);
    if (list) list.push(c);
    else placed.set(k, [c]);
  };
  for (const c of blockClusters) addPlaced(c);
  for (let c = tableAt; c < tableAt + tableClusters; c++) addPlaced(c);

  // Pass 2: each block from the old counts (the old structures left out) and the placed clusters.
  const table = new Uint8Array(tableClusters * cs);
  const tv = new DataView(table.buffer);
  const block = new Uint8Array(cs);
  for (let j = 0; j < indices.length; j++) {
    const k = indices[j]!;
    const lo = k * perNew;
    const hi = lo + perNew;
    block.fill(0);
    // The old counts, a whole old block at a time (old blocks may be larger or smaller than new ones).
    for (let ko = Math.floor(lo / perOld); ko * perOld < hi && ko < old.entries; ko++) {
      if (old.blockOffset(ko) === 0) continue;
      const src = await old.load(ko);
      const from = Math.max(lo, ko * perOld);
      const to = Math.min(hi, (ko + 1) * perOld, last + 1);
      for (let c = from; c < to; c++) {
        if (oldStructures.has(c)) continue;
        const v = readRefcount(src, c - ko * perOld, h.refcountOrder);
        if (v !== 0) writeRefcount(block, c - lo, order, v);
      }
    }
    for (const c of placed.get(k) ?? []) writeRefcount(block, c - lo, order, 1);
    const at = blockClusters[j]! * cs;
    await writeTo(storage, at, block);
    tv.setUint32(8 * k, Math.floor(at / 2 ** 32));
    tv.setUint32(8 * k + 4, at >>> 0);
  }
  const tableOffset = tableAt * cs;
  await writeTo(storage, tableOffset, table);
  // Durable before the header names them.
  await flushStorage(storage);
  return { tableOffset, tableClusters };
}

/** Free clusters remembered from the old structures for placing the new ones (the rest go past the end). */
const MAX_HOLES = 65536;

interface Placement {
  /** New block indices, ascending, and the cluster of each. */
  indices: number[];
  blockClusters: number[];
  tableAt: number;
  tableClusters: number;
  /** The placement needs exactly the blocks and table it has. */
  settled: boolean;
}

/**
 * Places `prev`'s counts of blocks and table clusters (first: what `used` alone needs): the blocks
 * in the first `holes`, then from `end` on; the table in the first run of free holes long enough
 * (with `inHoles`), else after the blocks. Settled when the blocks counting `used` and the placed
 * clusters, and the table naming them, are exactly as many as placed.
 */
function placeAt(
  used: ReadonlySet<number>,
  holes: readonly number[],
  end: number,
  perNew: number,
  cs: number,
  inHoles: boolean,
  prev?: Placement,
): Placement {
  const need = (indices: ReadonlySet<number>) => {
    let top = -1;
    for (const k of indices) top = Math.max(top, k);
    return Math.max(1, Math.ceil(((top + 1) * 8) / cs));
  };
  const n = prev ? prev.indices.length : used.size;
  const t = prev ? prev.tableClusters : need(new Set(used));
  const blockClusters: number[] = [];
  let next = end;
  let h = 0;
  while (blockClusters.length < n) blockClusters.push(h < holes.length ? holes[h++]! : next++);
  let tableAt = -1;
  if (inHoles) {
    for (let i = h; i + t <= holes.length; i++) {
      if (holes[i + t - 1] === holes[i]! + t - 1) {
        tableAt = holes[i]!;
        break;
      }
    }
  }
  if (tableAt < 0) tableAt = next;
  const indices = new Set(used);
  for (const c of blockClusters) indices.add(Math.floor(c / perNew));
  for (let c = tableAt; c < tableAt + t; c++) indices.add(Math.floor(c / perNew));
  const sorted = [...indices].sort((x, y) => x - y);
  const settled = sorted.length === n && need(indices) === t;
  return { indices: sorted, blockClusters, tableAt, tableClusters: settled ? t : need(indices), settled };
}
