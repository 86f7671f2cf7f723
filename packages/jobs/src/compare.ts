/**
 * The compare job (qemu-img compare): are two images' guest-visible
 * contents equal? Images of different sizes are equal when the larger one's
 * tail reads as zeros, unless `strict`, which also compares block status.
 * Offsets are reported as qemu-img does: the start of the first differing
 * 512-byte sector (counted from where the compared chunk starts).
 *
 * Both images are walked forward with a chain cursor each (every layer asked
 * about each of its runs once), and each run is read from the layer that
 * holds it. The blk command opens the images and prints the result.
 */
import { ChainCursor, type Image } from '@blk/core/portable';
import { firstDifference, firstNonZero } from './bytes.js';
import { checkAborted, CHUNK, EventLoopYielder } from './common.js';

export interface CompareOptions {
  /** -s: sizes and block status must match too. */
  strict?: boolean | undefined;
  /** Called with the bytes compared so far (of the larger image's size). */
  onProgress?: ((done: number, total: number) => void) | undefined;
  /** Stops the job between two runs (BlockError `aborted`). */
  signal?: AbortSignal | undefined;
}

export type CompareResult =
  /** Equal; `sizesDiffer`: the larger image's tail reads as zeros. */
  | { kind: 'identical'; sizesDiffer: boolean }
  /** -s and the sizes differ (nothing was read). */
  | { kind: 'size-mismatch' }
  /** -s and the block status differs at `offset`. */
  | { kind: 'status-mismatch'; offset: number }
  /** The contents differ at `offset`; `inTail`: past the smaller image's end (the sizes differ). */
  | { kind: 'content-mismatch'; offset: number; inTail: boolean; sizesDiffer: boolean };

interface Status {
  allocated: boolean;
  zero: boolean;
  length: number;
  /** The layer that holds the run (undefined: none). */
  depth: number | undefined;
  /** The run reaches the end of the image (QEMU's BDRV_BLOCK_EOF, part of what -s compares). */
  eof: boolean;
}

/** `cursor` walks one image forward, asking each layer about each of its runs once. */
async function statusAt(cursor: ChainCursor, size: number, offset: number, length: number): Promise<Status> {
  const st = await cursor.at(offset, length);
  const allocated = st.depth !== undefined;
  return {
    allocated,
    zero: !allocated || st.zero,
    length: st.length,
    depth: st.depth,
    eof: offset + st.length === size,
  };
}

/**
 * -s compares block status as qemu-img does, flags and all: a run that
 * reaches the end of one image and not of the other already differs (a
 * 1000-byte raw file, data then a 24-byte zero tail, against its 1024-byte
 * copy mismatches at offset 0, as with qemu-img). A driver may report one
 * run in pieces, so "reaches the end" is decided on the maximal run: the
 * pieces that follow are walked (once per image: the answer is remembered).
 */
class StrictStatus {
  /** From this offset on, the image is one run of equal status up to its end. */
  private uniformFrom = Infinity;

  /** A cursor of its own: the look-ahead walks forward, once, apart from the comparison's cursor. */
  private readonly cursor: ChainCursor;

  constructor(
    private readonly image: Image,
    private readonly yielder: EventLoopYielder,
  ) {
    this.cursor = new ChainCursor(image);
  }

  async reachesEnd(offset: number, st: Status): Promise<boolean> {
    if (st.eof || offset >= this.uniformFrom) return true;
    const size = this.image.size;
    let pos = offset + st.length;
    while (pos < size) {
      const next = await statusAt(this.cursor, size, pos, size - pos);
      if (next.allocated !== st.allocated || next.zero !== st.zero) return false;
      pos += next.length;
      await this.yielder.yield();
    }
    this.uniformFrom = offset;
    return true;
  }
}

async function sameStatus(
  s1: Status,
  s2: Status,
  offset: number,
  t1: StrictStatus,
  t2: StrictStatus,
): Promise<boolean> {
  if (s1.allocated !== s2.allocated || s1.zero !== s2.zero) return false;
  if (s1.eof === s2.eof) return true;
  return (await t1.reachesEnd(offset, s1)) === (await t2.reachesEnd(offset, s2));
}

/** Reads [offset, offset + data.length) of `image` from the layer at `depth` (the one that holds it). */
function readFrom(layers: Image[], depth: number | undefined, offset: number, data: Uint8Array): Promise<void> {
  return (layers[depth ?? 0] ?? layers[0]!).readInto(offset, data);
}

/** Compares `first` and `second` (see CompareResult). */
export async function compareImages(first: Image, second: Image, options: CompareOptions = {}): Promise<CompareResult> {
  const signal = options.signal;
  if (options.strict && first.size !== second.size) return { kind: 'size-mismatch' };
  const sizesDiffer = first.size !== second.size;
  const common = Math.min(first.size, second.size);
  const total = Math.max(first.size, second.size);
  const yielder = new EventLoopYielder();
  const layers1 = first.chain();
  const layers2 = second.chain();
  const buf1 = new Uint8Array(CHUNK);
  const buf2 = new Uint8Array(CHUNK);
  const cursor1 = new ChainCursor(first);
  const cursor2 = new ChainCursor(second);
  const strict1 = new StrictStatus(first, yielder);
  const strict2 = new StrictStatus(second, yielder);
  let offset = 0;
  while (offset < common) {
    checkAborted(signal, first.path);
    const s1 = await statusAt(cursor1, first.size, offset, common - offset);
    const s2 = await statusAt(cursor2, second.size, offset, common - offset);
    let chunk = Math.min(s1.length, s2.length);
    if (options.strict && !(await sameStatus(s1, s2, offset, strict1, strict2))) {
      return { kind: 'status-mismatch', offset };
    }
    if (!(s1.zero && s2.zero)) {
      chunk = Math.min(chunk, CHUNK - (offset % CHUNK));
      let mismatch: number | undefined;
      if (s2.zero || s1.zero) {
        const data = buf1.subarray(0, chunk);
        if (s1.zero) await readFrom(layers2, s2.depth, offset, data);
        else await readFrom(layers1, s1.depth, offset, data);
        const at = firstNonZero(data);
        if (at >= 0) mismatch = offset + at - (at % 512);
      } else {
        const d1 = buf1.subarray(0, chunk);
        const d2 = buf2.subarray(0, chunk);
        await readFrom(layers1, s1.depth, offset, d1);
        await readFrom(layers2, s2.depth, offset, d2);
        const at = firstDifference(d1, d2);
        if (at >= 0) mismatch = offset + at - (at % 512);
      }
      if (mismatch !== undefined) return { kind: 'content-mismatch', offset: mismatch, inTail: false, sizesDiffer };
    }
    offset += chunk;
    options.onProgress?.(offset, total);
    await yielder.yield();
  }
  if (sizesDiffer) {
    const over = first.size > second.size ? first : second;
    const found = await firstNonZeroAfter(over, common, buf1, yielder, signal);
    if (found !== undefined) return { kind: 'content-mismatch', offset: found, inTail: true, sizesDiffer };
  }
  return { kind: 'identical', sizesDiffer };
}

/** The first offset from `start` on that does not read as zero, or undefined. */
async function firstNonZeroAfter(
  image: Image,
  start: number,
  buf: Uint8Array,
  yielder: EventLoopYielder,
  signal: AbortSignal | undefined,
): Promise<number | undefined> {
  const cursor = new ChainCursor(image);
  const layers = image.chain();
  let offset = start;
  while (offset < image.size) {
    checkAborted(signal, image.path);
    const st = await statusAt(cursor, image.size, offset, image.size - offset);
    let chunk = st.length;
    if (!st.zero) {
      chunk = Math.min(chunk, CHUNK - (offset % CHUNK));
      const data = buf.subarray(0, chunk);
      await readFrom(layers, st.depth, offset, data);
      const at = firstNonZero(data);
      if (at >= 0) return offset + at - (at % 512);
    }
    offset += chunk;
    await yielder.yield();
  }
  return undefined;
}
