/**
 * The qcow2 snapshot table, read side (docs/interop/qcow2.txt "Snapshots"; QEMU 7.2's
 * qcow2_read_snapshots): every entry checked against QEMU's limits before anything is allocated
 * from it (table at most 64 MiB, at most 65536 entries, id and name lengths, extra data at most
 * 1 KiB, L1 tables aligned and at most 32 MiB).
 */
import { BlockError, readZeroFilled, type Storage } from '@blk/core/portable';
import { MAX_L1_BYTES, MAX_SNAPSHOTS, type Qcow2Header } from './header.js';

/** QEMU's QCOW_MAX_SNAPSHOTS_SIZE: the whole table, at most 64 MiB. */
export const MAX_SNAPSHOTS_BYTES = 64 * 1024 * 1024;
/** QEMU's QCOW_MAX_SNAPSHOT_EXTRA_DATA. */
export const MAX_SNAPSHOT_EXTRA = 1024;

export interface Qcow2Snapshot {
  /** File offset of this entry. */
  offset: number;
  l1TableOffset: number;
  l1Size: number;
  id: string;
  name: string;
  dateSec: number;
  dateNsec: number;
  /** Guest run time in nanoseconds. */
  vmClockNsec: number;
  vmStateSize: number;
  /** Virtual disk size at the snapshot (extra data; the image's size when absent). */
  diskSize: number;
  /** Instruction count (icount), or -1 when not recorded. */
  icount: number;
  extraDataSize: number;
  /** Extra data past the 24 bytes QEMU 7.2 defines, kept when the table is rewritten (QEMU's unknown_extra_data). */
  unknownExtra?: Uint8Array;
}

export interface SnapshotTable {
  snapshots: Qcow2Snapshot[];
  /** Bytes the table occupies (QEMU's snapshots_size). */
  size: number;
}

const TWO32 = 2 ** 32;
/** The extra data QEMU 7.2 writes: vm_state_size_large, disk_size, icount (QCowSnapshotExtraData). */
export const EXTRA_BYTES = 24;

function bad(message: string, path: string, offset?: number): BlockError {
  return new BlockError('invalid-header', message, {
    path,
    driver: 'qcow2',
    field: 'snapshots',
    ...(offset !== undefined ? { offset } : {}),
  });
}

function u64(dv: DataView, at: number): number {
  return dv.getUint32(at) * TWO32 + dv.getUint32(at + 4);
}

/**
 * Reads and checks the snapshot table of `header` (none: an empty table). Throws `invalid-header`
 * for what QEMU refuses at open, `truncated` for a table past the end of the file.
 */
export async function readSnapshotTable(
  storage: Storage,
  header: Qcow2Header,
  fileSize: number,
): Promise<SnapshotTable> {
  const n = header.nbSnapshots;
  const path = storage.path;
  if (n === 0) return { snapshots: [], size: 0 };
  if (n > MAX_SNAPSHOTS) throw bad('Too many snapshots', path);
  const start = header.snapshotsOffset;
  if (start % header.clusterSize !== 0 || start === 0) throw bad('Snapshot table offset invalid', path, start);
  // The table is read in one piece, bounded by QEMU's limit and by the file.
  const limit = Math.min(MAX_SNAPSHOTS_BYTES, Math.max(0, fileSize - start));
  if (limit < 40) {
    throw new BlockError('truncated', `snapshot table at ${start} lies past the end of the file`, {
      path,
      driver: 'qcow2',
      field: 'snapshots_offset',
      offset: start,
    });
  }
  const bytes = new Uint8Array(limit);
  await readZeroFilled(storage, start, bytes);
  const dv = new DataView(bytes.buffer);
  const snapshots: Qcow2Snapshot[] = [];
  let at = 0;
  const dec = new TextDecoder('utf-8');
  for (let i = 0; i < n; i++) {
    if (at + 40 > limit) {
      if (limit === MAX_SNAPSHOTS_BYTES) throw bad('Snapshot table too large', path, start + at);
      throw new BlockError('truncated', `snapshot table entry ${i} lies past the end of the file`, {
        path,
        driver: 'qcow2',
        field: 'snapshots',
        offset: start + at,
      });
    }
    const l1TableOffset = u64(dv, at);
    const l1Size = dv.getUint32(at + 8);
    const idLen = dv.getUint16(at + 12);
    const nameLen = dv.getUint16(at + 14);
    const dateSec = dv.getUint32(at + 16);
    const dateNsec = dv.getUint32(at + 20);
    const vmClockNsec = u64(dv, at + 24);
    const vmStateSize = dv.getUint32(at + 32);
    const extraDataSize = dv.getUint32(at + 36);
    const entry = at;
    at += 40;
    if (extraDataSize > MAX_SNAPSHOT_EXTRA)
      throw bad('Too much extra metadata in snapshot table entry', path, start + entry);
    if (at + extraDataSize + idLen + nameLen > limit) {
      if (limit === MAX_SNAPSHOTS_BYTES) throw bad('Snapshot table too large', path, start + entry);
      throw new BlockError('truncated', `snapshot table entry ${i} lies past the end of the file`, {
        path,
        driver: 'qcow2',
        field: 'snapshots',
        offset: start + entry,
      });
    }
    let vmStateSize64 = vmStateSize;
    let diskSize = header.size;
    let icount = -1;
    if (extraDataSize >= 8) vmStateSize64 = u64(dv, at);
    // Without it (v2 entries), the image's size, as QEMU reads it.
    if (extraDataSize >= 16) diskSize = u64(dv, at + 8);
    if (extraDataSize >= 24) {
      const hi = dv.getInt32(at + 16);
      icount = hi === -1 ? -1 : hi * TWO32 + dv.getUint32(at + 20);
    }
    const unknownExtra = extraDataSize > EXTRA_BYTES ? bytes.slice(at + EXTRA_BYTES, at + extraDataSize) : undefined;
    at += extraDataSize;
    const id = dec.decode(bytes.subarray(at, at + idLen));
    at += idLen;
    const name = dec.decode(bytes.subarray(at, at + nameLen));
    at += nameLen;
    at = (at + 7) & ~7;
    if (l1TableOffset % header.clusterSize !== 0)
      throw bad(`Snapshot L1 table offset invalid (snapshot ${id})`, path, start + entry);
    if (l1Size * 8 > MAX_L1_BYTES) throw bad(`Snapshot L1 table too large (snapshot ${id})`, path, start + entry);
    snapshots.push({
      offset: start + entry,
      l1TableOffset,
      l1Size,
      id,
      name,
      dateSec,
      dateNsec,
      vmClockNsec,
      vmStateSize: vmStateSize64,
      diskSize,
      icount,
      extraDataSize,
      ...(unknownExtra ? { unknownExtra } : {}),
    });
  }
  if (at > MAX_SNAPSHOTS_BYTES) throw bad('Snapshot table too large', path, start);
  return { snapshots, size: at };
}

/** One entry's bytes before 8-byte alignment: the fixed part, the extra data, the ID and the name. */
function entryBytes(
  s: Qcow2Snapshot,
  enc: { encode(text: string): Uint8Array },
): { id: Uint8Array; name: Uint8Array; length: number } {
  const id = enc.encode(s.id);
  const name = enc.encode(s.name);
  return { id, name, length: 40 + EXTRA_BYTES + (s.unknownExtra?.length ?? 0) + id.length + name.length };
}

/**
 * The snapshot table as QEMU 7.2's qcow2_write_snapshots writes it: each entry 8-byte aligned, with
 * the 24 bytes of extra data QEMU defines (a v2 entry without them gains them: its disk size and
 * icount -1), then any extra data QEMU does not know, kept; the 32-bit VM state size is 0 when the
 * size needs 64 bits. Returns the bytes (QEMU's snapshots_size: the last entry is not padded).
 */
export function encodeSnapshotTable(snapshots: readonly Qcow2Snapshot[]): Uint8Array {
  const enc = new TextEncoder();
  const parts = snapshots.map((s) => entryBytes(s, enc));
  let size = 0;
  for (const part of parts) size = ((size + 7) & ~7) + part.length;
  const out = new Uint8Array(size);
  const dv = new DataView(out.buffer);
  let at = 0;
  for (const [i, s] of snapshots.entries()) {
    const { id, name } = parts[i]!;
    at = (at + 7) & ~7;
    if (id.length > 0xffff || name.length > 0xffff) throw new RangeError(`snapshot ${s.id}: ID or name too long`);
    const extra = EXTRA_BYTES + (s.unknownExtra?.length ?? 0);
    dv.setBigUint64(at, BigInt(s.l1TableOffset));
    dv.setUint32(at + 8, s.l1Size);
    dv.setUint16(at + 12, id.length);
    dv.setUint16(at + 14, name.length);
    dv.setUint32(at + 16, s.dateSec);
    dv.setUint32(at + 20, s.dateNsec);
    dv.setBigUint64(at + 24, BigInt(s.vmClockNsec));
    dv.setUint32(at + 32, s.vmStateSize <= 0xffffffff ? s.vmStateSize : 0);
    dv.setUint32(at + 36, extra);
    dv.setBigUint64(at + 40, BigInt(s.vmStateSize));
    dv.setBigUint64(at + 48, BigInt(s.diskSize));
    dv.setBigInt64(at + 56, BigInt(s.icount));
    at += 40 + EXTRA_BYTES;
    if (s.unknownExtra) {
      out.set(s.unknownExtra, at);
      at += s.unknownExtra.length;
    }
    out.set(id, at);
    at += id.length;
    out.set(name, at);
    at += name.length;
  }
  return out;
}
