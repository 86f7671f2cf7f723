/** blk map: qemu-img map. */
import type { Image } from '@blk/core';
import { openCli, rulesOf, type BackingRuleFlags } from '../common.js';
import { UsageError } from '../errors.js';
import { parseSize } from '../size.js';
import { printable } from '../printable.js';
import { PieceWriter } from '../output.js';

export interface MapOpts extends BackingRuleFlags {
  format?: string;
  output: 'human' | 'json';
  startOffset?: string;
  maxLength?: string;
  backingProbe?: boolean;
  /** -F: the backing file's format (cow records none). */
  backingFormat?: string;
  /** -U: read the image even while another process writes it. */
  forceShare?: boolean;
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
    // As qemu-img's get_block_status: "present" is BDRV_BLOCK_ALLOCATED somewhere in the chain,
    // "data" and "zero" the flags of the layer that holds the run (a raw hole: zero, not data),
    // "offset" its host offset there; a run no layer holds is reported at the bottom layer, zero.
    const e: MapEntry = {
      start: run.start,
      length: run.length,
      depth: run.depth ?? bottom,
      present: run.allocated,
      zero: run.zero,
      data: run.data,
    };
    if (run.hostOffset !== undefined) {
      e.offset = run.hostOffset;
      if (run.path !== undefined) e.filename = run.path;
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
  if (
    (a.filename === undefined) !== (b.filename === undefined)
    || (a.offset === undefined) !== (b.offset === undefined)
  ) {
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
  let s =
    `{ "start": ${e.start}, "length": ${e.length}, "depth": ${e.depth}, "present": ${e.present}, `
    + `"zero": ${e.zero}, "data": ${e.data}`;
  if (e.offset !== undefined) s += `, "offset": ${e.offset}`;
  return `${s}}`;
}

export async function map(file: string, opts: MapOpts): Promise<number> {
  const image = await openCli(file, {
    format: opts.format,
    readOnly: true,
    backingProbe: opts.backingProbe,
    backingFormat: opts.backingFormat,
    forceShare: opts.forceShare,
    onMismatch: 'accept',
    ...rulesOf(opts),
  });
  // Output is gathered into large pieces, and waits for a slow reader (memory stays bounded).
  const out = new PieceWriter(process.stdout);
  try {
    const start = opts.startOffset !== undefined ? parseSize(opts.startOffset, 'start offset') : 0;
    if (start > image.size)
      throw new UsageError(`${file}: start offset ${start} is past the end of the image (${image.size} bytes)`);
    let length = image.size - start;
    if (opts.maxLength !== undefined) length = Math.min(length, parseSize(opts.maxLength, 'length'));
    if (opts.output === 'json') {
      let prev: MapEntry | undefined;
      await out.write('[');
      for await (const e of mapEntries(image, start, length)) {
        if (prev) {
          // Awaited only when a piece was written and the stream is full (no promise per entry otherwise).
          const full = out.write(`${jsonEntry(prev)},\n`);
          if (full !== undefined) await full;
        }
        prev = e;
      }
      await out.write(prev ? `${jsonEntry(prev)}]\n` : ']\n');
    } else {
      await out.write(`${'Offset'.padEnd(16)}${'Length'.padEnd(16)}${'Mapped to'.padEnd(16)}File\n`);
      const names = displayNames(file, image);
      // qemu-img's human format lists data runs only and does not tell zero kinds apart.
      let cur: MapEntry | undefined;
      const flush = () => {
        if (cur?.data && !cur.zero) {
          return out.write(
            `${hex16(cur.start)}${hex16(cur.length)}${hex16(cur.offset ?? 0)}${printable(names.get(cur.filename ?? '') ?? cur.filename ?? '')}\n`,
          );
        }
        return undefined;
      };
      for await (const e0 of mapEntries(image, start, length)) {
        const e = { ...e0 };
        if (!e.data || e.zero) {
          e.data = false;
          e.zero = true;
        }
        if (e.data && e.offset === undefined) {
          // qemu-img's words (compressed clusters have no offset to print).
          throw new Error(
            `${file}: File contains external, encrypted or compressed clusters (data at offset ${e.start} is not stored at a known file offset)`,
          );
        }
        if (cur && mergeable(cur, e)) {
          cur.length += e.length;
          continue;
        }
        await flush();
        cur = e;
      }
      await flush();
    }
  } finally {
    await out.flush(); // Also what was made before an error, as when every line was written at once.
    await image.close();
  }
  return 0;
}

/**
 * The names qemu-img map prints for the layers of a chain: the top image as named on the command
 * line, each backing file as its stored name combined with the name of the image that names it
 * (QEMU's path_combine), keyed by the layer's resolved path.
 */
function displayNames(file: string, image: Image): Map<string, string> {
  const names = new Map<string, string>();
  let name = file;
  for (const layer of image.chain()) {
    if (!names.has(layer.path)) names.set(layer.path, name);
    const stored = layer.backingReference?.path;
    if (stored === undefined) break;
    const slash = name.lastIndexOf('/');
    name = stored.startsWith('/') || slash < 0 ? stored : name.slice(0, slash + 1) + stored;
  }
  return names;
}
