/**
 * The copy engine of the jobs (convert into a new target, convert -n into an
 * existing one, and commit's copy of an overlay's own runs): walks the
 * source's chain once with a chain-status cursor (`Image.map()`, which asks
 * each layer about each of its runs once) and reads every run straight from
 * the layer that holds it (the image at that depth), never again through the
 * top of the chain, so a run held by the base costs one read of the base and
 * no lookups in the layers above it.
 *
 * Runs are gathered into windows of `chunk` bytes aligned to `chunk`: every
 * run that falls inside a window is read into one buffer (each from its own
 * layer), and the contiguous data in it is written with one request, so a
 * chain whose layers interleave in small runs still gives large sequential
 * writes. Up to `depth` windows are in flight (reading one overlaps writing
 * another: a bounded pipeline).
 *
 * Holes stay holes: runs that read as zeros (held by no layer, or known
 * zero) are not written to a target that reads zeros already (a new image,
 * or -n with --target-is-zero); into an existing target (`against`) zeros are
 * written where it does not read zeros already (Image.writeZeroes with unmap
 * allowed, as qemu-img). Data that is all zeros in aligned granules is not
 * written either (qemu-img's -S): the granule is the larger of the sparse
 * size and the target's own allocation unit (`targetGranule`), as qemu-img
 * aligns its zero detection to the larger of -S and the target's request
 * alignment. With `against`, only granules that differ from it are written.
 *
 * Write order (qemu-img convert's -W): by default each window's writes start
 * only once the previous window's writes have completed, so that the target
 * fills from front to back (reads still run ahead); `outOfOrder` lets every
 * window write as soon as it has read.
 *
 * Write-behind: every `writeBehind` bytes written, the engine flushes the
 * target in the background (one flush at a time, not awaited by the
 * windows), so that the disk takes what was written while the copy goes on,
 * instead of all of it in the caller's final flush. A flush is a barrier for
 * writes that completed before it, so this changes nothing in what a later
 * flush guarantees; a failed background flush fails the copy (a later fsync
 * may succeed although the data it lost is gone: Linux reports a write-back
 * error once). Under `-t unsafe` the target's storage ignores flushes, and
 * this costs nothing.
 *
 * `signal` stops the copy between windows with a BlockError of kind
 * `aborted`; every request in flight has settled when it throws.
 */
import type { Image } from '@blk/core/portable';
import { firstNonZero } from './bytes.js';
import { checkAborted, CopyPipeline, COPY_DEPTH, EventLoopYielder, isZero, sameBytes } from './common.js';

export interface CopyOptions {
  /** I/O unit and window size (bytes). */
  chunk: number;
  /** Windows in flight (qemu-img's -m, coroutines). */
  depth: number;
  /** Aligned zero granules at least this long are not written (0: write every byte). */
  sparseSize: number;
  /**
   * What the target reads already where the engine writes nothing: a backing
   * file (-B) or the target itself (-n). Granules equal to it are skipped.
   * Undefined: the target reads zeros everywhere (a new image, or -n with
   * --target-is-zero).
   */
  against?: Image | undefined;
  /** Write every byte of every run (no hole, no compare): -S 0 without `against`, or a device. */
  writeAll?: boolean | undefined;
  /**
   * Copy only the runs the source holds itself (depth 0: commit's copy of an
   * overlay into its base); everything else is left as the target has it.
   */
  ownRunsOnly?: boolean | undefined;
  /** -W: windows write as soon as they are read, in any order. */
  outOfOrder?: boolean | undefined;
  /** Called with the bytes gone through so far. */
  onProgress?: ((done: number) => void) | undefined;
  /** Stops the copy between windows (BlockError `aborted`). */
  signal?: AbortSignal | undefined;
  /**
   * Flush the target in the background every this many bytes written (write-behind; 0: never, the
   * caller flushes at the end). Default WRITE_BEHIND.
   */
  writeBehind?: number | undefined;
  /**
   * qemu-img convert -c: every cluster of the target holding data is written compressed
   * (`WriteFlags.compress`), the last one up to the end of the image; all-zero clusters stay holes.
   * The target must declare its cluster size, `chunk` must be a multiple of it, and neither
   * `against` nor `writeAll` nor `ownRunsOnly` may be given.
   */
  compress?: boolean | undefined;
}

/** Default write-behind interval (bytes written between background flushes of the target). */
export const WRITE_BEHIND = 32 * 1024 * 1024;

/**
 * The target's allocation unit, which the engine uses as the least granule
 * of its zero detection: its cluster size when it declares one, else its
 * request alignment, else its sector size.
 */
export function targetGranule(image: Image): number {
  const limits = image.capabilities?.limits;
  const g = limits?.clusterSize ?? limits?.requestAlignment ?? image.sectorSize;
  return Number.isSafeInteger(g) && g > 0 ? g : 512;
}

/**
 * The granule of zero detection for `-S sparseSize` into `target`: the
 * larger of the two (qemu-img: MAX(-S, target request alignment)); with
 * -S 0 (write every byte) the target's own granule for compares.
 */
export function sparseGranule(sparseSize: number, target: Image): number {
  return Math.max(sparseSize, targetGranule(target));
}

interface Slot {
  buf: Uint8Array;
  bbuf: Uint8Array | undefined;
}

/** A run inside a window: where, and which layer to read it from (undefined: zeros, written). */
interface Segment {
  start: number;
  length: number;
  layer: Image | undefined;
}

/** Copies `source` (its whole virtual size) into `target` at the same offsets. */
export async function copyImageData(source: Image, target: Image, o: CopyOptions): Promise<void> {
  const chunk = o.chunk;
  const compress = o.compress === true;
  const cluster = target.capabilities?.limits.clusterSize;
  if (compress && (cluster === undefined || chunk % cluster !== 0 || o.against || o.writeAll || o.ownRunsOnly)) {
    throw new RangeError(
      `${target.path}: a compressed copy needs a target with clusters, a chunk of whole clusters, and no backing, in-place or write-all mode`,
    );
  }
  // Compressed: whole clusters are the unit of the hole test and of every write.
  const granule = compress && cluster !== undefined ? cluster : sparseGranule(o.sparseSize, target);
  const against = o.against;
  const writeAll = o.writeAll ?? false;
  const signal = o.signal;
  const layers = source.chain();
  const pipeline = new CopyPipeline<Slot>(Math.max(1, o.depth), () => ({
    buf: new Uint8Array(chunk),
    bbuf: against ? new Uint8Array(chunk) : undefined,
  }));
  const order = o.outOfOrder ? undefined : new WriteOrder();
  const behind = new WriteBehind(target, o.writeBehind ?? WRITE_BEHIND);
  const yielder = new EventLoopYielder();
  let done = 0;
  const advance = (n: number) => {
    done += n;
    o.onProgress?.(done);
  };

  let window: { base: number; segments: Segment[] } | undefined;

  const flushWindow = async () => {
    const w = window;
    if (!w) return;
    window = undefined;
    checkAborted(signal, source.path);
    behind.check();
    const turn = order?.next();
    await pipeline.start(async ({ buf, bbuf }) => {
      try {
        // The window's segments are packed from the start of the slot's buffers (in order, so that a
        // span of contiguous segments stays contiguous): a window holding 1 MiB of a 4 MiB chunk touches
        // 1 MiB of its buffer, and the process keeps resident only what windows really held.
        let bytes = 0;
        const spans: Array<{ start: number; end: number; at: number }> = [];
        for (const s of w.segments) {
          const data = buf.subarray(bytes, bytes + s.length);
          if (s.layer) await s.layer.readInto(s.start, data);
          else data.fill(0);
          // Contiguous segments (from any layers) make one span, written with one request.
          const last = spans[spans.length - 1];
          if (last && last.end === s.start) last.end += s.length;
          else spans.push({ start: s.start, end: s.start + s.length, at: bytes });
          bytes += s.length;
        }
        const bases: Array<Uint8Array | undefined> = [];
        for (const span of spans) {
          if (!against || !bbuf) {
            bases.push(undefined);
            continue;
          }
          const n = span.end - span.start;
          const base = bbuf.subarray(span.at, span.at + n);
          const inside = Math.max(0, Math.min(n, against.size - span.start));
          if (inside < n) base.fill(0, inside);
          if (inside > 0) await against.readInto(span.start, base.subarray(0, inside));
          bases.push(base);
        }
        await turn?.ready;
        for (let i = 0; i < spans.length; i++) {
          const span = spans[i]!;
          const data = buf.subarray(span.at, span.at + span.end - span.start);
          await writeChanged(target, span.start, data, bases[i], granule, writeAll, compress);
        }
        behind.wrote(bytes);
        advance(bytes);
      } finally {
        turn?.done();
      }
    });
    await yielder.yield();
  };

  /** Adds [start, end) read from `layer` (undefined: zeros to write) to the windows it falls in. */
  const addData = async (start: number, end: number, layer: Image | undefined) => {
    for (let pos = start; pos < end; ) {
      const base = pos - (pos % chunk);
      const n = Math.min(base + chunk, end) - pos;
      if (window && window.base !== base) await flushWindow();
      window ??= { base, segments: [] };
      const last = window.segments[window.segments.length - 1];
      if (last && last.layer === layer && last.start + last.length === pos) last.length += n;
      else window.segments.push({ start: pos, length: n, layer });
      pos += n;
    }
  };

  const zeroRange = async (start: number, end: number) => {
    for (let pos = start; pos < end; ) {
      checkAborted(signal, source.path);
      const n = Math.min(chunk - (pos % chunk), end - pos);
      const at = pos;
      const turn = order?.next();
      await pipeline.start(async ({ bbuf }) => {
        try {
          // Data that is all zeros already (a probe-guarded head or tail written as zeros, say) needs nothing.
          const current = bbuf!.subarray(0, n);
          await against!.readInto(at, current);
          await turn?.ready;
          if (!isZero(current)) {
            await target.writeZeroes(at, n, { mayUnmap: true });
            behind.wrote(n);
          }
          advance(n);
        } finally {
          turn?.done();
        }
      });
      pos += n;
      await yielder.yield();
    }
  };

  try {
    for await (const run of source.map()) {
      checkAborted(signal, source.path);
      const runEnd = run.start + run.length;
      if (o.ownRunsOnly) {
        if (run.depth === 0) await addData(run.start, runEnd, layers[0]);
        continue;
      }
      const zeroRun = run.depth === undefined || run.zero;
      if (!zeroRun) {
        // Read from the layer that holds the run, not again through the layers above it.
        await addData(run.start, runEnd, layers[run.depth!]);
      } else if (writeAll) {
        await addData(run.start, runEnd, undefined);
      } else if (!against && compress) {
        // The zeros that share a cluster with data are read into the window with it (a compressed
        // write covers whole clusters); whole clusters of zeros stay holes.
        const headEnd = Math.min(runEnd, Math.ceil(run.start / granule) * granule);
        const tailStart = Math.max(headEnd, runEnd - (runEnd % granule));
        if (headEnd > run.start) await addData(run.start, headEnd, undefined);
        advance(tailStart - headEnd);
        if (runEnd > tailStart) await addData(tailStart, runEnd, undefined);
      } else if (!against) {
        // Reads as zeros in the target already: leave a hole.
        advance(run.length);
      } else {
        // Zeros over something else: only where that something does not read as zeros already, and
        // as QEMU's write-zeroes with unmap (a raw file gets a hole, a cow overlay drops or writes zeros).
        await flushWindow();
        for await (const sub of against.map(run.start, Math.min(run.length, Math.max(0, against.size - run.start)))) {
          if (sub.depth === undefined || sub.zero) advance(sub.length);
          else await zeroRange(sub.start, sub.start + sub.length);
        }
        const beyond = Math.max(0, runEnd - Math.max(run.start, against.size));
        advance(beyond);
      }
    }
    await flushWindow();
    await pipeline.drain();
    await behind.settle();
    behind.check();
  } finally {
    await pipeline.settle();
    await behind.settle();
  }
}

/**
 * Copies `from`'s own runs (depth 0 of its map) into the same offsets of
 * `into`, every byte, through the copy engine, calling `onBytes` with the
 * bytes of each window once it is written. Every write has finished when it
 * returns; on failure every window in flight has settled before it throws.
 * Nothing is flushed: that is the caller's step.
 */
export async function copyOwnRuns(
  from: Image,
  into: Image,
  chunk: number,
  onBytes: (n: number) => void,
  signal?: AbortSignal,
): Promise<void> {
  let reported = 0;
  await copyImageData(from, into, {
    chunk,
    depth: COPY_DEPTH,
    sparseSize: 0,
    writeAll: true,
    ownRunsOnly: true,
    outOfOrder: true,
    signal,
    onProgress: (done) => {
      onBytes(done - reported);
      reported = done;
    },
  });
}

/**
 * The copy's background flushes of its target: one at a time, started once
 * `every` bytes have been written since the last one began; the first
 * failure is kept for `check`.
 */
class WriteBehind {
  private pending: Promise<void> | undefined;
  private failure: { err: unknown } | undefined;
  private since = 0;

  constructor(
    private readonly target: Image,
    private readonly every: number,
  ) {}

  /** `n` more bytes were written (their writes have completed). */
  wrote(n: number): void {
    if (!(this.every > 0)) return;
    this.since += n;
    if (this.since < this.every || this.pending !== undefined || this.failure !== undefined) return;
    this.since = 0;
    this.pending = this.target.flush().then(
      () => {
        this.pending = undefined;
      },
      (err: unknown) => {
        this.failure ??= { err };
        this.pending = undefined;
      },
    );
  }

  /** Throws the failure of a background flush, if one failed. */
  check(): void {
    if (this.failure) throw this.failure.err;
  }

  /** Resolves once no background flush is running (never throws: see check). */
  async settle(): Promise<void> {
    while (this.pending !== undefined) await this.pending;
  }
}

/** Hands out turns: each turn is ready once the previous one is done (done() always runs, on failure too). */
class WriteOrder {
  private last: Promise<void> = Promise.resolve();

  next(): { ready: Promise<void>; done(): void } {
    const ready = this.last;
    let done!: () => void;
    this.last = new Promise<void>((resolve) => {
      done = resolve;
    });
    return { ready, done };
  }
}

/**
 * Writes the granules of `data` (at image offset `pos`) that are not zero
 * (or, with `base`, that differ from it), coalescing neighbours into one
 * write. Granules are aligned to absolute multiples of `granule`.
 */
async function writeChanged(
  out: Image,
  pos: number,
  data: Uint8Array,
  base: Uint8Array | undefined,
  granule: number,
  writeAll: boolean,
  compress = false,
): Promise<void> {
  const flags = compress ? { compress: true } : undefined;
  if (writeAll) {
    await out.write(pos, data);
    return;
  }
  const end = pos + data.length;
  let pending = -1;
  for (let g = pos; g < end; ) {
    let gEnd = Math.min(g - (g % granule) + granule, end);
    const from = g - pos,
      to = gEnd - pos;
    let skip: boolean;
    if (base) skip = sameBytes(data.subarray(from, to), base.subarray(from, to));
    // Without a base, a non-zero first or last byte settles it without a compare (the usual case for data).
    else if (data[from] !== 0 || data[to - 1] !== 0) skip = false;
    else {
      // A granule that may be zero: one scan finds where the zeros end, and every whole granule before that
      // is skipped at once (a stretch of zeros between data costs one compare, not one per granule).
      const nonZero = firstNonZero(data.subarray(from));
      const zerosEnd = nonZero < 0 ? end : g + nonZero;
      const stretchEnd = zerosEnd >= end ? end : zerosEnd - (zerosEnd % granule);
      skip = stretchEnd > g;
      if (skip) gEnd = stretchEnd;
    }
    if (!skip) {
      if (pending < 0) pending = g;
    } else if (pending >= 0) {
      await out.write(pending, data.subarray(pending - pos, g - pos), flags);
      pending = -1;
    }
    g = gEnd;
  }
  if (pending >= 0) await out.write(pending, data.subarray(pending - pos), flags);
}
