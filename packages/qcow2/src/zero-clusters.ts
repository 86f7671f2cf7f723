/**
 * Zero clusters (v3's L2 entries with bit 0 set) for a downgrade to compat=0.10, which cannot say
 * them: finding them in every L2 table (the active one's and the snapshots'), and QEMU's
 * qcow2_expand_zero_clusters for an image without a backing file, which needs no allocation:
 * - a zero cluster without a host cluster becomes unallocated (it reads as zeros either way);
 * - one with a host cluster (zero-alloc) gets zeros written into that cluster, durably, before
 *   its flag is cleared (a crash in between leaves a zero cluster that reads as zeros too). A host
 *   cluster another entry reads as data (a zero write without unmap over data a snapshot shares)
 *   would change that snapshot, which QEMU 7.2 does; the caller refuses that instead.
 * - over a backing file (where unallocated reads the backing file), a plain zero cluster gets a new
 *   cluster of zeros, as QEMU: allocated and written, its refcount durable, before the entry names
 *   it (a crash in between leaks it).
 */
import { flushStorage, readZeroFilled, writeTo, type Storage } from '@blk/core/portable';
import type { Qcow2Header } from './header.js';
import type { SnapshotEngine } from './snapshot-write.js';
import { readSnapshotTable } from './snapshots.js';

const COPIED_HI = 0x80000000;
const COMPRESSED_HI = 0x40000000;
const ZERO_LO = 1;
/** Bits 9..55 of an L1 or L2 entry: the host offset. */
function entryOffset(dv: DataView, at: number): number {
  const hi = dv.getUint32(at) & 0x00ffffff;
  const lo = dv.getUint32(at + 4);
  return hi * 2 ** 32 + (lo - (lo % 512));
}

/** A standard (not compressed) L2 entry with the zero flag. */
function isZero(dv: DataView, at: number): boolean {
  return (dv.getUint32(at) & COMPRESSED_HI) === 0 && (dv.getUint32(at + 4) & ZERO_LO) !== 0;
}

/** The L2 tables of every L1 table (the active one as `activeL1`, else as on disk), each once. */
async function l2Tables(storage: Storage, h: Qcow2Header, activeL1?: Uint8Array): Promise<number[]> {
  const l1s: Uint8Array[] = [];
  if (activeL1) l1s.push(activeL1);
  else if (h.l1Size > 0) {
    const l1 = new Uint8Array(h.l1Size * 8);
    await readZeroFilled(storage, h.l1TableOffset, l1);
    l1s.push(l1);
  }
  for (const s of (await readSnapshotTable(storage, h, await storage.size())).snapshots) {
    if (s.l1Size === 0) continue;
    const l1 = new Uint8Array(s.l1Size * 8);
    await readZeroFilled(storage, s.l1TableOffset, l1);
    l1s.push(l1);
  }
  const seen = new Set<number>();
  for (const l1 of l1s) {
    const dv = new DataView(l1.buffer, l1.byteOffset, l1.byteLength);
    for (let i = 0; i < l1.length / 8; i++) {
      const l2 = entryOffset(dv, 8 * i);
      if (l2 !== 0) seen.add(l2);
    }
  }
  return [...seen];
}

/**
 * What a downgrade must know of every L2 table (active or of a snapshot): whether there are zero
 * clusters (`any`), a host cluster (byte offset) that a zero-alloc entry names and another entry
 * reads as data (a zero write without unmap over a cluster a snapshot shares keeps the cluster),
 * and whether there are compressed clusters (v2 reads only deflate).
 */
export async function findZeroClusters(
  storage: Storage,
  h: Qcow2Header,
): Promise<{ any: boolean; sharedWithData: number | undefined; compressed: boolean }> {
  const l2 = new Uint8Array(h.clusterSize);
  const dv = new DataView(l2.buffer);
  const tables = await l2Tables(storage, h);
  let any = false;
  let compressed = false;
  const hosts = new Set<number>();
  for (const offset of tables) {
    await readZeroFilled(storage, offset, l2);
    for (let j = 0; j < l2.length; j += 8) {
      if ((dv.getUint32(j) & COMPRESSED_HI) !== 0) compressed = true;
      if (!isZero(dv, j)) continue;
      any = true;
      const host = entryOffset(dv, j);
      if (host !== 0) hosts.add(host);
    }
  }
  if (hosts.size > 0) {
    for (const offset of tables) {
      await readZeroFilled(storage, offset, l2);
      for (let j = 0; j < l2.length; j += 8) {
        if ((dv.getUint32(j) & COMPRESSED_HI) !== 0 || isZero(dv, j)) continue;
        const host = entryOffset(dv, j);
        if (hosts.has(host)) return { any, sharedWithData: host, compressed };
      }
    }
  }
  return { any, sharedWithData: undefined, compressed };
}

/**
 * Expands every zero cluster of an image without a backing file (see the module comment), through
 * the open image's L2 cache for the tables the active L1 names (the others directly), then makes
 * the tables durable. The caller has written back everything the image held in memory.
 */
export async function expandZeroClusters(e: SnapshotEngine): Promise<void> {
  const { storage, header: h } = e;
  const backed = h.backingName !== undefined;
  const cs = h.clusterSize;
  const active = new Set<number>();
  const l1 = e.activeL1();
  const l1v = new DataView(l1.buffer, l1.byteOffset, l1.byteLength);
  for (let i = 0; i < h.l1Size; i++) {
    const l2 = entryOffset(l1v, 8 * i);
    if (l2 !== 0) active.add(l2);
  }
  const tables = await l2Tables(storage, h, l1.subarray(0, h.l1Size * 8));
  const bytes = new Uint8Array(cs);
  const dv = new DataView(bytes.buffer);
  const withTable = async <T>(t: number, fn: (view: DataView) => T): Promise<T> => {
    if (active.has(t)) return e.useL2(t, (view) => fn(view));
    await readZeroFilled(storage, t, bytes);
    return fn(dv);
  };

  // First the data: zeros in every zero-alloc host cluster and, over a backing file, in a new
  // cluster for each plain zero entry (counted once per L1 table sharing its L2 table, as QEMU),
  // with the refcounts, durable before any entry changes (a crash before: leaked clusters only).
  const hosts = new Set<number>();
  /** Over a backing file: the new cluster of each plain zero entry, by table and entry offset. */
  const fresh = new Map<number, Map<number, number>>();
  /** The refcount of each table that got new clusters (1: their entries get the COPIED bit). */
  const tableRefs = new Map<number, number>();
  for (const t of tables) {
    const plain: number[] = [];
    await withTable(t, (view) => {
      for (let j = 0; j < cs; j += 8) {
        if (!isZero(view, j)) continue;
        const host = entryOffset(view, j);
        if (host !== 0) hosts.add(host);
        else if (backed) plain.push(j);
      }
    });
    if (plain.length === 0) continue;
    const refs = await e.rc.get(t / cs);
    tableRefs.set(t, refs);
    const map = new Map<number, number>();
    for (const j of plain) {
      const c = await e.rc.allocate();
      if (refs > 1) await e.rc.add(c, refs - 1);
      map.set(j, c * cs);
      hosts.add(c * cs);
    }
    fresh.set(t, map);
  }
  if (fresh.size > 0) e.allocated();
  if (hosts.size > 0) {
    const zeros = new Uint8Array(cs);
    const fileSize = await storage.size();
    for (const host of hosts) {
      // As QEMU's bdrv_pwrite_zeroes: zeroed in place without a buffer where the file can (the host
      // file then has no data there, which map reports), else written; past the end, written.
      const zeroed =
        storage.capabilities.zeroRange
        && storage.zeroRange !== undefined
        && host + cs <= fileSize
        && (await storage.zeroRange(host, cs, false));
      if (!zeroed) await writeTo(storage, host, zeros);
    }
    await e.rc.writeBack();
    if (!e.unsafe) await flushStorage(storage);
  }

  // Then the entries: zero-alloc keeps its cluster (and COPIED bit) without the flag; a plain zero
  // entry becomes unallocated, or over a backing file names its new cluster.
  const expand = (t: number, view: DataView, dirty?: (lo: number, hi: number) => void): boolean => {
    let changed = false;
    const map = fresh.get(t);
    for (let j = 0; j < cs; j += 8) {
      if (!isZero(view, j)) continue;
      if (entryOffset(view, j) === 0) {
        const to = map?.get(j) ?? 0;
        view.setUint32(j, Math.floor(to / 2 ** 32) | (to !== 0 && tableRefs.get(t) === 1 ? COPIED_HI : 0));
        view.setUint32(j + 4, to >>> 0);
      } else {
        view.setUint32(j + 4, view.getUint32(j + 4) & ~ZERO_LO);
      }
      dirty?.(j, j + 8);
      changed = true;
    }
    return changed;
  };
  for (const t of tables) {
    if (active.has(t)) await e.useL2(t, (view, dirty) => expand(t, view, dirty));
    else {
      await readZeroFilled(storage, t, bytes);
      if (expand(t, dv)) await writeTo(storage, t, bytes);
    }
  }
  await e.writeBackL2();
  if (!e.unsafe) await flushStorage(storage);
}
