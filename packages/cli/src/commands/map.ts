/** blk map: qemu-img map. */
import type { Image } from '@blk/core';
import { openCli, rulesOf, type BackingRuleFlags } from '../common.js';
import { UsageError } from '../errors.js';
import { parseSize } from '../size.js';
import { printable } from '../printable.js';

export interface MapOpts extends BackingRuleFlags {
  format?: string;
  output: 'human' | 'json';
  startOffset?: string;
  maxLength?: string;
  backingProbe?: boolean;
}

/** One run as qemu-img map describes it. */
export interface MapEntry {
  start: number;
  length: number;
  depth: number;
  present: boolean;
  zero: boolean;
  data: boolean;
  offset?: number;
  filename?: string;
}

/** Walks [start, start+length) of `image` as qemu-img map's merged entries. */
export async function* mapEntries(image: Image, start = 0, length = image.size - start): AsyncGenerator<MapEntry> {
  const bottom = image.chain().length - 1;
  let pending: MapEntry | undefined;
  for await (const run of image.map(start, length)) {
    let e: MapEntry;
    if (run.depth === undefined) {
      e = { start: run.start, length: run.length, depth: bottom, present: false, zero: true, data: false };
    } else {
      e = { start: run.start, length: run.length, depth: run.depth, present: true, zero: run.zero, data: !run.zero };
      if (run.hostOffset !== undefined) {
        e.offset = run.hostOffset;
        if (run.path !== undefined) e.filename = run.path;
      }
    }
    if (pending && mergeable(pending, e)) {
      pending.length += e.length;
      continue;
    }
    if (pending) yield pending;
    pending = e;
  }
  if (pending) yield pending;
}

/** qemu-img's entry_mergeable(). */
function mergeable(a: MapEntry, b: MapEntry): boolean {
  if (a.zero !== b.zero || a.data !== b.data || a.depth !== b.depth || a.present !== b.present) return false;
  if ((a.filename === undefined) !== (b.filename === undefined) || (a.offset === undefined) !== (b.offset === undefined)) {
    return false;
  }
  if (a.filename !== undefined && a.filename !== b.filename) return false;
  if (a.offset !== undefined && a.offset + a.length !== b.offset) return false;
  return true;
}

/** printf("%#-16" PRIx64): `0` for zero, else `0x...`, left-aligned in 16 columns. */
function hex16(n: number): string {
  return (n === 0 ? '0' : `0x${n.toString(16)}`).padEnd(16);
}

export function jsonEntry(e: MapEntry): string {
  let s = `{ "start": ${e.start}, "length": ${e.length}, "depth": ${e.depth}, "present": ${e.present}, `
    + `"zero": ${e.zero}, "data": ${e.data}`;
  if (e.offset !== undefined) s += `, "offset": ${e.offset}`;
  return `${s}}`;
}

/** Up to this many characters of output are kept before one stdout write. */
const OUTPUT_PIECE = 256 * 1024;

/** Collects output and writes it to stdout in pieces of about OUTPUT_PIECE characters; end() writes the rest. */
function bufferedStdout(): { write(text: string): void; end(): void } {
  let parts: string[] = [];
  let size = 0;
  const emit = () => {
    if (parts.length === 0) return;
    process.stdout.write(parts.join(''));
    parts = [];
    size = 0;
  };
  return {
    write(text) {
      parts.push(text);
      size += text.length;
      if (size >= OUTPUT_PIECE) emit();
    },
    end: emit,
  };
}

export async function map(file: string, opts: MapOpts): Promise<number> {
  const image = await openCli(file, { format: opts.format, readOnly: true, backingProbe: opts.backingProbe, onMismatch: 'accept', ...rulesOf(opts) });
  // Output is gathered into large pieces: one stdout write per extent costs more than making the extent.
  const out = bufferedStdout();
  try {
    const start = opts.startOffset !== undefined ? parseSize(opts.startOffset, 'start offset') : 0;
    if (start > image.size) throw new UsageError(`${file}: start offset ${start} is past the end of the image (${image.size} bytes)`);
    let length = image.size - start;
    if (opts.maxLength !== undefined) length = Math.min(length, parseSize(opts.maxLength, 'length'));
    if (opts.output === 'json') {
      let prev: MapEntry | undefined;
      out.write('[');
      for await (const e of mapEntries(image, start, length)) {
        if (prev) out.write(`${jsonEntry(prev)},\n`);
        prev = e;
      }
      out.write(prev ? `${jsonEntry(prev)}]\n` : ']\n');
    } else {
      out.write(`${'Offset'.padEnd(16)}${'Length'.padEnd(16)}${'Mapped to'.padEnd(16)}File\n`);
      // qemu-img's human format lists data runs only and does not tell zero kinds apart.
      let cur: MapEntry | undefined;
      const flush = () => {
        if (cur && cur.data && !cur.zero) {
          out.write(`${hex16(cur.start)}${hex16(cur.length)}${hex16(cur.offset ?? 0)}${printable(cur.filename ?? '')}\n`);
        }
      };
      for await (const e0 of mapEntries(image, start, length)) {
        const e = { ...e0 };
        if (!e.data || e.zero) {
          e.data = false;
          e.zero = true;
        }
        if (e.data && e.offset === undefined) {
          throw new Error(`${file}: the image has data at offset ${e.start} that is not stored at a known file offset`);
        }
        if (cur && mergeable(cur, e)) {
          cur.length += e.length;
          continue;
        }
        flush();
        cur = e;
      }
      flush();
    }
  } finally {
    out.end(); // Also what was made before an error, as when every line was written at once.
    await image.close();
  }
  return 0;
}
