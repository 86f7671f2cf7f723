/** What `blk info` says about an image: qemu-img's ImageInfo fields. */
import * as fs from 'node:fs';
import type { BackingFacts, Image, SnapshotInfo } from '@blk/core';
import { allocatedBytes, mtimeSec } from './common.js';
import { sizeToStr } from './format.js';
import { qdictOrder, type QValue } from './qjson.js';
import { printable, printableBytes } from './printable.js';
import type { BackingVerdict } from './jobs/common.js';
import { snapshotJson, snapshotTable } from './snapshot-table.js';

export type QDict = { [key: string]: QValue | undefined };

/** camelCase / snake_case keys to QAPI's kebab-case. */
export function kebab(key: string): string {
  return key
    .replace(/_/g, '-')
    .replace(/([a-z0-9])([A-Z])/g, '$1-$2')
    .toLowerCase();
}

/** Driver facts as JSON values with QAPI-style keys (functions, buffers and undefined dropped). */
export function toQValue(value: unknown): QValue | undefined {
  if (value === null) return null;
  switch (typeof value) {
    case 'string':
    case 'boolean':
      return value;
    case 'number':
      return Number.isFinite(value) ? value : undefined;
    case 'bigint':
      return Number(value);
    case 'object': {
      if (ArrayBuffer.isView(value)) return undefined;
      if (Array.isArray(value)) return value.map((v) => toQValue(v) ?? null);
      const out: QDict = {};
      for (const [k, v] of Object.entries(value as Record<string, unknown>)) {
        const q = toQValue(v);
        if (q !== undefined) out[kebab(k)] = q;
      }
      return out;
    }
    default:
      return undefined;
  }
}

export interface DescribeOptions {
  /** The name to show for the image (the user's spelling for the top image). */
  filename: string;
  /** --backing-probe was given: an unopened backing file's format is unknown. */
  backingProbe?: boolean;
  /** What the user's backing rules (--backing-dir, --forbid-backing) say of the backing file, when given. */
  verdict?: BackingVerdict;
  /** -F: the format the backing file was named as (what it opens as, even when it is not opened). */
  backingFormat?: string | undefined;
}

/** qemu-img info's fields for one opened image. */
export function describeImage(image: Image, o: DescribeOptions): QDict {
  const info = image.info();
  const e: QDict = {};
  e.filename = o.filename;
  e.format = info.format;
  e['virtual-size'] = info.size;
  const actual = allocatedBytes(image.path);
  if (actual !== undefined) e['actual-size'] = actual;
  const extras = info.extras;
  if (extras?.clusterSize !== undefined) e['cluster-size'] = extras.clusterSize;
  e['dirty-flag'] = extras?.dirty ?? false;
  if (extras?.snapshots && extras.snapshots.length > 0) e.snapshots = extras.snapshots.map(snapshotJson);
  const ref = image.backingReference;
  if (info.backing) {
    e['backing-filename'] = info.backing.stored;
    // No resolved path (stored bytes that are not UTF-8): none is shown rather than a wrong one.
    if (info.backing.resolved !== undefined) e['full-backing-filename'] = info.backing.resolved;
    // The format the backing file was opened as; when it was not opened, the one it would open as.
    const fmt = image.backing?.format ?? o.backingFormat ?? info.backing.format ?? (o.backingProbe ? undefined : 'raw');
    if (fmt !== undefined) e['backing-filename-format'] = fmt;
    if (o.verdict) {
      e['backing-allowed'] = o.verdict.allowed;
      if (o.verdict.reason !== undefined) e['backing-refusal'] = o.verdict.reason;
    }
  }
  const data = (toQValue(info.formatSpecific) ?? {}) as QDict;
  const resolved = info.backing?.resolved;
  if (ref && resolved !== undefined && fs.existsSync(resolved)) {
    // The driver compares what the image recorded with the file (`backing-<what>-matches`); info only
    // gathers the facts. Without opening it: a raw backing file's size is its length.
    const assumed = o.backingFormat ?? info.backing?.format;
    const rawBacking = assumed === 'raw' || (assumed === undefined && !o.backingProbe);
    for (const check of image.checkBackingFacts(backingFactsSync(resolved, image.backing ?? undefined, rawBacking))) {
      data[`backing-${check.what}-matches`] = check.matches;
    }
  }
  if (Object.keys(data).length > 0) e['format-specific'] = { type: info.format, data };
  return e;
}

function dumpQValue(value: QValue, indent: number, out: string[]): void {
  const pad = '    '.repeat(indent);
  if (value !== null && typeof value === 'object') {
    if (Array.isArray(value)) {
      value.forEach((item, i) => {
        if (item !== null && typeof item === 'object') {
          out.push(`${pad}[${i}]:`);
          dumpQValue(item, indent + 1, out);
        } else {
          out.push(`${pad}[${i}]: ${scalar(item)}`);
        }
      });
      return;
    }
    for (const key of qdictOrder(value)) {
      const v = value[key]!;
      const name = key.replace(/-/g, ' ');
      if (v !== null && typeof v === 'object') {
        out.push(`${pad}${name}:`);
        dumpQValue(v, indent + 1, out);
      } else {
        out.push(`${pad}${name}: ${scalar(v)}`);
      }
    }
  }
}

function scalar(v: QValue): string {
  if (v === null) return 'null';
  return printable(String(v));
}

/** What the human output shows differently from the JSON fields. */
export interface HumanExtras {
  /** The stored backing path bytes when they are not UTF-8 (shown with \xHH escapes). */
  storedBackingBytes?: Uint8Array | undefined;
  /** Internal snapshots, listed as qemu-img info lists them. */
  snapshots?: readonly SnapshotInfo[] | undefined;
}

/** qemu-img info's human output for one image (lines, no trailing newline; names from images escaped). */
export function humanInfo(e: QDict, extras: HumanExtras = {}): string {
  const lines: string[] = [];
  lines.push(`image: ${printable(String(e.filename))}`);
  lines.push(`file format: ${String(e.format)}`);
  const vsize = e['virtual-size'] as number;
  lines.push(`virtual size: ${sizeToStr(vsize)} (${vsize} bytes)`);
  const actual = e['actual-size'];
  lines.push(`disk size: ${typeof actual === 'number' ? sizeToStr(actual) : 'unavailable'}`);
  if (typeof e['cluster-size'] === 'number') lines.push(`cluster_size: ${e['cluster-size']}`);
  if (e['dirty-flag'] === true) lines.push('cleanly shut down: no');
  const bf = e['backing-filename'];
  if (typeof bf === 'string') {
    const full = e['full-backing-filename'];
    const stored = extras.storedBackingBytes;
    let line = `backing file: ${stored ? printableBytes(stored) : printable(bf)}`;
    if (stored) line += ' (not valid UTF-8: blk will not open it)';
    else if (typeof full !== 'string') line += ' (cannot determine actual path)';
    else if (full !== bf) line += ` (actual path: ${printable(full)})`;
    lines.push(line);
  }
  if (typeof e['backing-filename-format'] === 'string')
    lines.push(`backing file format: ${printable(e['backing-filename-format'])}`);
  if (typeof e['backing-allowed'] === 'boolean') {
    lines.push(
      `backing file allowed: ${e['backing-allowed'] ? 'yes' : `no (${printable(String(e['backing-refusal'] ?? 'refused'))})`}`,
    );
  }
  if (extras.snapshots && extras.snapshots.length > 0) lines.push(...snapshotTable(extras.snapshots));
  const fs_ = e['format-specific'] as QDict | undefined;
  if (fs_ && typeof fs_.data === 'object' && fs_.data !== null) {
    lines.push('Format specific information:');
    dumpQValue(fs_.data, 1, lines);
  }
  return lines.join('\n');
}

/** The facts the core would gather about a backing file (see gatherBackingFacts), read synchronously for info. */
function backingFactsSync(
  path: string,
  opened: { size: number; format: string } | undefined,
  raw: boolean,
): BackingFacts {
  const facts: BackingFacts = {};
  if (opened) {
    facts.size = opened.size;
    facts.format = opened.format;
  } else if (raw) {
    facts.format = 'raw';
  }
  try {
    const st = fs.statSync(path);
    facts.fileSize = st.size;
    facts.isFile = st.isFile();
    if (!opened && raw) facts.size = st.size;
  } catch {
    return facts;
  }
  const now = mtimeSec(path);
  if (now !== undefined) facts.mtimeSec = now;
  return facts;
}
