/** qemu-img's snapshot table (bdrv_snapshot_dump) and SnapshotInfo JSON, for `snapshot -l` and `info`. */
import type { SnapshotInfo } from '@blk/core';
import { sizeToStr } from './format.js';
import { printable } from './printable.js';
import type { QValue } from './qjson.js';

type QDict = { [key: string]: QValue | undefined };

const pad2 = (n: number) => String(n).padStart(2, '0');

/** "%Y-%m-%d %H:%M:%S" in local time, as g_date_time_format. */
function dateColumn(sec: number): string {
  const d = new Date(sec * 1000);
  return `${d.getFullYear()}-${pad2(d.getMonth() + 1)}-${pad2(d.getDate())} ${pad2(d.getHours())}:${pad2(d.getMinutes())}:${pad2(d.getSeconds())}`;
}

function clockColumn(nsec: number): string {
  const secs = Math.floor(nsec / 1e9);
  return `${pad2(Math.floor(secs / 3600))}:${pad2(Math.floor((secs / 60) % 60))}:${pad2(secs % 60)}.${String(Math.floor((nsec / 1e6) % 1000)).padStart(3, '0')}`;
}

/** One row ("%-9s %-16s %8s%20s%13s%11s"); the header row for undefined. Names from images are escaped. */
export function snapshotRow(s: SnapshotInfo | undefined): string {
  const row = (id: string, tag: string, size: string, date: string, clock: string, icount: string) =>
    `${id.padEnd(9)} ${tag.padEnd(16)} ${size.padStart(8)}${date.padStart(20)}${clock.padStart(13)}${icount.padStart(11)}`;
  if (s === undefined) return row('ID', 'TAG', 'VM SIZE', 'DATE', 'VM CLOCK', 'ICOUNT');
  return row(
    printable(s.id),
    printable(s.name),
    sizeToStr(s.vmStateSize),
    dateColumn(s.dateSec),
    clockColumn(s.vmClockNsec),
    s.icount !== undefined ? String(s.icount) : '',
  );
}

/** "Snapshot list:" and the table, one line each (no trailing newline). */
export function snapshotTable(list: readonly SnapshotInfo[]): string[] {
  return ['Snapshot list:', snapshotRow(undefined), ...list.map((s) => snapshotRow(s))];
}

/** qemu's SnapshotInfo as JSON. */
export function snapshotJson(s: SnapshotInfo): QDict {
  const o: QDict = {
    id: s.id,
    name: s.name,
    'vm-state-size': s.vmStateSize,
    'date-sec': s.dateSec,
    'date-nsec': s.dateNsec,
    'vm-clock-sec': Math.floor(s.vmClockNsec / 1e9),
    'vm-clock-nsec': s.vmClockNsec % 1e9,
  };
  if (s.icount !== undefined) o.icount = s.icount;
  return o;
}
