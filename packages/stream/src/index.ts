/**
 * @blk/stream: an image's contents (the merged backing chain, as `Image.read`
 * sees it) as streams, and images written from streams. Portable: web streams
 * and async iterables only, no Node built-ins (the Node `Readable`/`Writable`
 * are in `@blk/stream/node`).
 *
 * Nothing here holds the image in memory: a byte stream reads one chunk per
 * pull (into the reader's own buffer with a BYOB reader), a sparse stream one
 * data run piece per pull, and writing consumes one chunk at a time.
 */
import { BlockError, type Host, type HostCreateOptions, type Image } from '@blk/core/portable';

/** Default transfer size of the streams: 1 MiB. */
export const DEFAULT_CHUNK_SIZE = 1024 * 1024;

/** Options of the read streams. */
export interface ReadStreamOptions {
  /** First byte (default 0). */
  start?: number;
  /** End, exclusive (default the image's size). */
  end?: number;
  /** Bytes per read of the image (default 1 MiB, at most the image's `maxTransfer`). */
  chunkSize?: number;
  /**
   * Bytes the stream reads ahead of its consumer (default 0: a read of the
   * image happens only when the consumer asks). A web byte stream's queue
   * holds at most this many bytes plus one chunk.
   */
  highWaterMark?: number;
  /** Stops the stream: it errors with `aborted`. */
  signal?: AbortSignal;
}

/** A run of stored data: `data` is the image's content at `offset`. */
export interface DataRun {
  offset: number;
  data: Uint8Array;
}

/** The checked range and chunk size of a read stream (`start`, `end` exclusive, `chunk` bytes per read). */
export interface StreamRange {
  start: number;
  end: number;
  chunk: number;
}

/** Checks a read stream's options against `image`: `invalid-argument` or `out-of-range` when they cannot be. */
export function streamRange(image: Image, options: ReadStreamOptions): StreamRange {
  const start = options.start ?? 0;
  const end = options.end ?? image.size;
  const where = { path: image.path };
  if (!Number.isSafeInteger(start) || start < 0) {
    throw new BlockError('invalid-argument', `stream start ${start} is not a byte offset`, {
      ...where,
      field: 'start',
    });
  }
  if (!Number.isSafeInteger(end) || end < start || end > image.size) {
    throw new BlockError('out-of-range', `stream end ${end} is outside [${start}, ${image.size}]`, {
      ...where,
      field: 'end',
    });
  }
  const max = image.capabilities.limits.maxTransfer;
  const asked = options.chunkSize ?? DEFAULT_CHUNK_SIZE;
  if (!Number.isSafeInteger(asked) || asked <= 0) {
    throw new BlockError('invalid-argument', `chunk size ${asked} is not a positive byte count`, {
      ...where,
      field: 'chunkSize',
    });
  }
  const hwm = options.highWaterMark ?? 0;
  if (!Number.isSafeInteger(hwm) || hwm < 0) {
    throw new BlockError('invalid-argument', `high-water mark ${hwm} is not a byte count`, {
      ...where,
      field: 'highWaterMark',
    });
  }
  return { start, end, chunk: Math.min(asked, max) };
}

function abortedError(image: Image, signal: AbortSignal): BlockError {
  return new BlockError('aborted', 'stream aborted', { path: image.path, cause: signal.reason });
}

/**
 * The image's bytes from `start` to `end` as a web `ReadableStream` of
 * `type: 'bytes'`. A BYOB reader's buffer is filled directly by
 * `Image.readInto` (no copy); a default reader gets chunks of `chunkSize`.
 * Reads happen only as the consumer pulls (plus `highWaterMark` bytes ahead).
 */
export function imageReadableStream(image: Image, options: ReadStreamOptions = {}): ReadableStream<Uint8Array> {
  const { start, end, chunk } = streamRange(image, options);
  const signal = options.signal;
  let pos = start;
  let done = false;
  const onAbort = (controller: ReadableByteStreamController) => () => {
    if (done) return;
    done = true;
    controller.error(abortedError(image, signal!));
  };
  let abortListener: (() => void) | undefined;
  return new ReadableStream(
    {
      type: 'bytes',
      autoAllocateChunkSize: chunk,
      start(controller) {
        if (signal === undefined) return;
        if (signal.aborted) {
          done = true;
          controller.error(abortedError(image, signal));
          return;
        }
        abortListener = onAbort(controller);
        signal.addEventListener('abort', abortListener, { once: true });
      },
      async pull(controller) {
        if (done) return;
        if (pos >= end) {
          done = true;
          signal?.removeEventListener('abort', abortListener!);
          controller.close();
          controller.byobRequest?.respond(0);
          return;
        }
        const request = controller.byobRequest;
        if (request?.view) {
          const view = request.view;
          const n = Math.min(view.byteLength, end - pos, chunk);
          const into = new Uint8Array(view.buffer, view.byteOffset, n);
          await image.readInto(pos, into);
          if (done) return;
          pos += n;
          request.respond(n);
        } else {
          // Filling the queue ahead of the consumer (highWaterMark > 0): a buffer of our own.
          const n = Math.min(chunk, end - pos);
          const data = new Uint8Array(n);
          await image.readInto(pos, data);
          if (done) return;
          pos += n;
          controller.enqueue(data);
        }
      },
      cancel() {
        done = true;
        if (abortListener) signal?.removeEventListener('abort', abortListener);
      },
    },
    { highWaterMark: options.highWaterMark ?? 0 },
  );
}

/**
 * The image's stored data from `start` to `end` as `{ offset, data }` runs of
 * at most `chunkSize` bytes, in order, skipping what reads as zeros without
 * being stored: holes and ranges no layer of the chain holds (from block
 * status, `Image.map`). Runs that are stored zeros are yielded (the image
 * says they are data). The bytes not yielded read as zeros.
 */
export async function* imageDataRuns(image: Image, options: ReadStreamOptions = {}): AsyncGenerator<DataRun> {
  const { start, end, chunk } = streamRange(image, options);
  const signal = options.signal;
  if (end === start) return;
  for await (const run of image.map(start, end - start)) {
    if (run.zero || run.depth === undefined) continue;
    for (let at = run.start; at < run.start + run.length; at += chunk) {
      if (signal?.aborted) throw abortedError(image, signal);
      const data = new Uint8Array(Math.min(chunk, run.start + run.length - at));
      await image.readInto(at, data);
      yield { offset: at, data };
    }
  }
}

/**
 * `imageDataRuns` as a web `ReadableStream` of `{ offset, data }` objects
 * (one run piece read per pull; `highWaterMark` counts runs, default 0).
 */
export function imageSparseStream(image: Image, options: ReadStreamOptions = {}): ReadableStream<DataRun> {
  const runs = imageDataRuns(image, { ...options, highWaterMark: 0 });
  return new ReadableStream<DataRun>(
    {
      async pull(controller) {
        const next = await runs.next();
        if (next.done) controller.close();
        else controller.enqueue(next.value);
      },
      async cancel() {
        await runs.return(undefined);
      },
    },
    { highWaterMark: options.highWaterMark ?? 0 },
  );
}

/** What a stream written into an image may carry: bytes (in order) or data runs at offsets. */
export type ImageSource =
  | ReadableStream<Uint8Array>
  | ReadableStream<DataRun>
  | AsyncIterable<Uint8Array | DataRun>
  | Iterable<Uint8Array | DataRun>;

/** Options of `writeImageFromStream`. */
export interface WriteStreamOptions {
  /** Where the first byte of a byte stream lands (default 0). Data runs carry their own offsets. */
  offset?: number;
  /**
   * Blocks of `zeroBlock` bytes that are all zeros become `writeZeroes(..., { mayUnmap: true })`
   * instead of data writes (default true): a fresh image stays sparse, and
   * over a backing file they still read as zeros.
   */
  detectZeroes?: boolean;
  /** The granule of `detectZeroes` (default 64 KiB). */
  zeroBlock?: number;
  /** Flush the image at the end (default true). */
  flush?: boolean;
  /** Stops the copy between two chunks (`aborted`). */
  signal?: AbortSignal;
  /**
   * Called before a write that would go past the image's end, with the end
   * it needs; may grow the image (`createImageFromStream` does). Absent: such
   * a write fails with `out-of-range`.
   */
  grow?: (needed: number) => Promise<void>;
}

/** What `writeImageFromStream` did. */
export interface WriteStreamResult {
  /** Bytes taken from the stream. */
  bytes: number;
  /** Of those, bytes written as zeros without a data buffer. */
  zeroBytes: number;
  /** One past the highest byte written. */
  end: number;
}

function isDataRun(x: unknown): x is DataRun {
  return typeof x === 'object' && x !== null && !ArrayBuffer.isView(x) && 'offset' in x && 'data' in x;
}

async function* iterate(source: ImageSource): AsyncGenerator<Uint8Array | DataRun> {
  if (typeof (source as ReadableStream).getReader === 'function') {
    const reader = (source as ReadableStream<Uint8Array | DataRun>).getReader();
    try {
      for (;;) {
        const { done, value } = await reader.read();
        if (done) return;
        yield value;
      }
    } finally {
      reader.releaseLock();
    }
  }
  yield* source as AsyncIterable<Uint8Array | DataRun>;
}

function allZero(data: Uint8Array): boolean {
  // Word-wise where the view is aligned, bytewise at the edges.
  const head = Math.min(data.length, (8 - (data.byteOffset % 8)) % 8);
  for (let i = 0; i < head; i++) if (data[i] !== 0) return false;
  const words = Math.floor((data.length - head) / 8);
  const w = new BigUint64Array(data.buffer, data.byteOffset + head, words);
  for (let i = 0; i < words; i++) if (w[i] !== 0n) return false;
  for (let i = head + words * 8; i < data.length; i++) if (data[i] !== 0) return false;
  return true;
}

/**
 * Writes a stream into an open, writable image: a byte stream lands from
 * `offset` on, in order; data runs (`{ offset, data }`, as `imageDataRuns`
 * yields) land at their offsets. One chunk is held at a time (a byte
 * source's chunks are written as they come, whatever their size). Blocks of
 * zeros are written as zeros without data where the image can
 * (`detectZeroes`). Works with web `ReadableStream`s, async iterables and a
 * Node `Readable` (an async iterable of `Buffer`s, which are `Uint8Array`s).
 */
export async function writeImageFromStream(
  image: Image,
  source: ImageSource,
  options: WriteStreamOptions = {},
): Promise<WriteStreamResult> {
  let pos = options.offset ?? 0;
  if (!Number.isSafeInteger(pos) || pos < 0) {
    throw new BlockError('invalid-argument', `offset ${pos} is not a byte offset`, {
      path: image.path,
      field: 'offset',
    });
  }
  const detect = options.detectZeroes ?? true;
  const block = options.zeroBlock ?? 64 * 1024;
  if (!Number.isSafeInteger(block) || block <= 0) {
    throw new BlockError('invalid-argument', `zero block ${block} is not a positive byte count`, {
      path: image.path,
      field: 'zeroBlock',
    });
  }
  const result: WriteStreamResult = { bytes: 0, zeroBytes: 0, end: 0 };
  const put = async (at: number, data: Uint8Array): Promise<void> => {
    if (data.length === 0) return;
    if (!Number.isSafeInteger(at) || at < 0) {
      throw new BlockError('invalid-argument', `data run offset ${at} is not a byte offset`, { path: image.path });
    }
    const stop = at + data.length;
    if (stop > image.size) {
      if (options.grow === undefined) {
        throw new BlockError('out-of-range', `the stream goes past the end of the image (${stop} > ${image.size})`, {
          path: image.path,
          offset: at,
        });
      }
      await options.grow(stop);
    }
    if (!detect) {
      await image.write(at, data);
    } else {
      // Runs of whole zero blocks become writeZeroes; everything between them one write.
      let dataFrom = 0;
      for (let i = 0; i < data.length; i += block) {
        const piece = data.subarray(i, Math.min(data.length, i + block));
        if (!allZero(piece)) continue;
        if (i > dataFrom) await image.write(at + dataFrom, data.subarray(dataFrom, i));
        await image.writeZeroes(at + i, piece.length, { mayUnmap: true });
        result.zeroBytes += piece.length;
        dataFrom = i + piece.length;
      }
      if (dataFrom < data.length) await image.write(at + dataFrom, data.subarray(dataFrom));
    }
    result.bytes += data.length;
    result.end = Math.max(result.end, stop);
  };
  for await (const item of iterate(source)) {
    if (options.signal?.aborted) {
      throw new BlockError('aborted', 'write from stream aborted', { path: image.path, cause: options.signal.reason });
    }
    if (isDataRun(item)) {
      await put(item.offset, item.data);
    } else if (item instanceof Uint8Array) {
      await put(pos, item);
      pos += item.length;
    } else {
      throw new BlockError(
        'invalid-argument',
        'a stream written into an image carries Uint8Arrays or { offset, data }',
        {
          path: image.path,
        },
      );
    }
  }
  if (options.flush ?? true) await image.flush();
  return result;
}

/** Options of `createImageFromStream`: those of `Host.createImage`, with `size` optional. */
export type CreateFromStreamOptions = Omit<HostCreateOptions, 'size'> & {
  /**
   * Virtual size. Absent: the image is created empty and grown as the stream
   * goes (its format must support `resize`), then cut to the stream's end.
   */
  size?: number;
} & Pick<WriteStreamOptions, 'detectZeroes' | 'zeroBlock' | 'signal'>;

/**
 * Creates an image at `path` on `host` and writes `source` into it (see
 * `writeImageFromStream`). With no `size`, the image grows as the stream
 * needs (doubling, so the number of resizes is logarithmic) and ends exactly
 * as long as the stream (for data runs: the end of the last run).
 */
export async function createImageFromStream(
  host: Host,
  path: string,
  source: ImageSource,
  options: CreateFromStreamOptions,
): Promise<WriteStreamResult> {
  const { detectZeroes, zeroBlock, signal, size, ...create } = options;
  await host.createImage(path, { ...create, size: size ?? 0 });
  const image = await host.openImage(path, { format: options.format });
  try {
    const write: WriteStreamOptions = { flush: false };
    if (detectZeroes !== undefined) write.detectZeroes = detectZeroes;
    if (zeroBlock !== undefined) write.zeroBlock = zeroBlock;
    if (signal !== undefined) write.signal = signal;
    if (size === undefined) {
      write.grow = async (needed) => {
        await image.resize(Math.max(needed, image.size * 2, DEFAULT_CHUNK_SIZE));
      };
    }
    const result = await writeImageFromStream(image, source, write);
    if (size === undefined && image.size !== result.end) await image.resize(result.end, { shrink: true });
    await image.close();
    return result;
  } catch (err) {
    // A stream that failed half-way leaves no half-written image behind.
    await image.close().catch(() => undefined);
    await host.vfs.remove(path).catch(() => undefined);
    throw err;
  }
}

/**
 * A web `WritableStream` of bytes that lands in `image` from `offset` on
 * (for `pipeTo`); the image is flushed when the stream closes. Each chunk is
 * written before the next is taken (the writer's backpressure).
 */
export function imageWritableStream(
  image: Image,
  options: Omit<WriteStreamOptions, 'flush'> = {},
): WritableStream<Uint8Array> {
  let pos = options.offset ?? 0;
  const one = (data: Uint8Array, at: number) =>
    writeImageFromStream(image, [data], { ...options, offset: at, flush: false });
  return new WritableStream<Uint8Array>({
    async write(chunk) {
      await one(chunk, pos);
      pos += chunk.length;
    },
    async close() {
      await image.flush();
    },
  });
}
