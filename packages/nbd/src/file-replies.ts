/**
 * The reply to a READ whose bytes lie in host files (portable: no Node built-ins): the same chunks,
 * byte for byte, that the transmission's buffered path sends (src/transmission.ts, `read`), with
 * each chunk's data given as host file ranges and zero runs instead of a buffer, for a stream that
 * sends file ranges itself (`ByteStream.sendParts`: sendfile from a worker thread on Node).
 */
import type { HostFileRun } from '@blk/core/portable';
import { encodeSimpleReply, layOutReadChunks } from './protocol.js';

/** Zero runs shorter than this are sent as data (a hole chunk costs 32 bytes and a turn of the client's parser). */
export const MIN_HOLE = 4096;

/** Bytes `length` of host file `fd` from `position`; `fd` undefined: zeros. */
export interface FileSpan {
  fd: number | undefined;
  position: number;
  length: number;
}

/** What the reply to a READ of [offset, offset + length) is made of (`read` decides it as below). */
export interface ReadReplyShape {
  cookie: bigint;
  offset: number;
  length: number;
  structured: boolean;
  /** Zero runs of at least MIN_HOLE become hole chunks (structured, large enough, no DF). */
  sparse: boolean;
}

/**
 * The reply's parts, in order: headers as bytes, data as spans of `runs` (which tile the range, as
 * `Image.readFileRuns` gives them; runs it read give their bytes). Simple: one header and the data. Structured: one data chunk,
 * or, when sparse and there are long enough zero runs, data and hole chunks, the last with DONE.
 */
export function fileReplyParts(r: ReadReplyShape, runs: ReadonlyArray<HostFileRun>): Array<Uint8Array | FileSpan> {
  const parts: Array<Uint8Array | FileSpan> = [];
  if (!r.structured) {
    parts.push(encodeSimpleReply(r.cookie, 0));
    pushSpans(parts, runs, r.offset, r.offset + r.length);
    return parts;
  }
  const holes = r.sparse ? holesOf(runs, r.offset) : [];
  layOutReadChunks(
    r.cookie,
    r.offset,
    r.length,
    holes,
    (h) => parts.push(h),
    (from, to) => pushSpans(parts, runs, r.offset + from, r.offset + to),
  );
  return parts;
}

/** Zero runs as [start, end) relative to `base`, neighbours merged, those shorter than MIN_HOLE dropped. */
function holesOf(runs: ReadonlyArray<HostFileRun>, base: number): Array<[number, number]> {
  const holes: Array<[number, number]> = [];
  for (const run of runs) {
    if (run.fd !== undefined || run.data !== undefined || run.length <= 0) continue;
    const s = run.start - base;
    const last = holes[holes.length - 1];
    if (last && last[1] === s) last[1] = s + run.length;
    else holes.push([s, s + run.length]);
  }
  return holes.filter(([s, e]) => e - s >= MIN_HOLE);
}

/** Appends the spans of `runs` covering guest bytes [from, to). */
function pushSpans(
  parts: Array<Uint8Array | FileSpan>,
  runs: ReadonlyArray<HostFileRun>,
  from: number,
  to: number,
): void {
  for (const run of runs) {
    const s = Math.max(from, run.start);
    const e = Math.min(to, run.start + run.length);
    if (s >= e) continue;
    if (run.data !== undefined) parts.push(run.data.subarray(s - run.start, e - run.start));
    else parts.push({ fd: run.fd, position: run.fd === undefined ? 0 : run.position + (s - run.start), length: e - s });
  }
}
