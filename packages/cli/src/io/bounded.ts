/**
 * Keeping blk io's memory independent of its arguments: requests are checked
 * against the image before their buffers are allocated, long reads that are
 * only checked and long writes of one byte value go through one 16 MiB
 * buffer, a pattern file is read no further than the request needs, and hex
 * dumps go out in pieces that wait for a slow reader.
 */
import * as fs from 'node:fs';
import { checkRange, type Image, type WriteFlags } from '@blk/core';

/**
 * Requests longer than this go in pieces through one buffer of this size
 * (qemu-io allocates the whole request, up to 2 GiB).
 */
export const PIECE = 16 * 1024 * 1024;
/** Bytes of a buffer dumped (-v) per piece of output: about 4.3 characters per byte. */
const DUMP_PIECE = 64 * 1024;

/** The `out-of-range` error the request would fail with, or undefined when it fits the image. */
export function rangeError(image: Image, offset: number, count: number): unknown {
  try {
    checkRange(offset, count, image.size, image.path);
    return undefined;
  } catch (err) {
    return err;
  }
}

/** Buffers of one byte value, only ever read (at most two values kept: a session alternating two patterns). */
const fills = new Map<number, Uint8Array>();

/**
 * A buffer of at least `count` (at most PIECE) bytes of value `byte`, shared by every request that
 * writes that value: thousands of small aio_write requests in flight then hold one buffer, not one
 * each (a fresh 4 KiB ArrayBuffer per request was most of blk io's garbage collection).
 */
function filled(byte: number, count: number): Uint8Array {
  let buf = fills.get(byte);
  if (buf === undefined || buf.length < count) {
    let length = 4096;
    while (length < count) length *= 2;
    buf = new Uint8Array(Math.min(length, PIECE)).fill(byte);
    fills.delete(byte);
    if (fills.size >= 2) fills.delete(fills.keys().next().value!);
    fills.set(byte, buf);
  }
  return buf;
}

/**
 * Writes `count` bytes of value `byte` at `offset` (write -P, the default
 * 0xcd), from a shared buffer of at most PIECE bytes (`filled`). Every piece is issued
 * at once (`Image.write` takes its place among the requests in flight when
 * called), so the request keeps its place in issue order against later
 * overlapping aio requests, as one request would. `flags` (FUA) go with every piece.
 */
export async function writeFilled(
  image: Image,
  offset: number,
  count: number,
  byte: number,
  flags: WriteFlags = {},
): Promise<void> {
  const err = rangeError(image, offset, count);
  if (err !== undefined) throw err;
  const piece = filled(byte, Math.min(count, PIECE));
  if (count <= PIECE) {
    await image.write(offset, piece.subarray(0, count), flags);
    return;
  }
  const writes: Array<Promise<void>> = [];
  for (let done = 0; done < count; done += PIECE) {
    writes.push(image.write(offset + done, piece.subarray(0, Math.min(PIECE, count - done)), flags));
  }
  // Wait for all before reporting, so that no piece is still running when the first failure is reported.
  const results = await Promise.allSettled(writes);
  for (const r of results) if (r.status === 'rejected') throw r.reason;
}

/**
 * Reads [offset, offset + count) in pieces of at most PIECE bytes through
 * one buffer, handing each to `visit` with its position in the request. For
 * reads whose data is only checked, not kept or shown. The pieces go one
 * after the other: a command waits for its read, so no request is issued in
 * between that the order could matter to.
 */
export async function readInPieces(
  image: Image,
  offset: number,
  count: number,
  visit: (piece: Uint8Array, at: number) => void,
): Promise<void> {
  const buf = new Uint8Array(Math.min(count, PIECE));
  for (let done = 0; done < count; done += buf.length) {
    const piece = buf.subarray(0, Math.min(buf.length, count - done));
    await image.readInto(offset + done, piece);
    visit(piece, done);
  }
}

/**
 * Reads `file` into `buf` as far as it goes (qemu_io_alloc_from_file's
 * fread of the request's length): never more than the request needs, however
 * large (or endless, as /dev/zero) the file is. Returns the bytes read.
 */
export function readPatternInto(file: string, buf: Uint8Array): number {
  const fd = fs.openSync(file, 'r');
  try {
    let total = 0;
    while (total < buf.length) {
      const n = fs.readSync(fd, buf, total, buf.length - total, null);
      if (n === 0) break;
      total += n;
    }
    return total;
  } finally {
    fs.closeSync(fd);
  }
}

/**
 * Writes the -v hex dump of `buf` (whose byte 0 is at `offset`) through
 * `out`, a piece at a time, waiting for `drain` between pieces: the dump is
 * four times the buffer's size and must not be built as one string.
 */
export async function dumpInPieces(
  buf: Uint8Array,
  offset: number,
  out: (text: string) => void,
  drain: () => Promise<void>,
  dump: (buf: Uint8Array, offset: number) => string,
): Promise<void> {
  for (let i = 0; i < buf.length; i += DUMP_PIECE) {
    out(dump(buf.subarray(i, Math.min(i + DUMP_PIECE, buf.length)), offset + i));
    await drain();
  }
}
