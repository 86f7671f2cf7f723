/**
 * @blk/stream/node: Node `Readable`/`Writable` streams of an image's
 * contents. A byte `Readable` (not object mode) reads one chunk per `_read`,
 * so Node's backpressure (`highWaterMark`, in bytes) bounds what is read
 * ahead of a slow consumer; a sparse one is an object-mode `Readable` of
 * `{ offset, data }` runs. To write an image from a Node `Readable`, pass it
 * to `writeImageFromStream`/`createImageFromStream` (it is an async iterable)
 * or pipe into `imageNodeWritable`.
 */
import { Readable, Writable } from 'node:stream';
import { BlockError, type Image } from '@blk/core/portable';
import { imageDataRuns, streamRange, writeImageFromStream, type ReadStreamOptions } from './index.js';

export * from './index.js';

/** Options of `imageNodeReadable`. */
export interface NodeReadableOptions extends ReadStreamOptions {
  /** Yield `{ offset, data }` runs of stored data (object mode), skipping holes. */
  sparse?: boolean;
}

class ImageReadable extends Readable {
  private pos: number;
  private reading = false;

  constructor(
    private readonly image: Image,
    start: number,
    private readonly end: number,
    private readonly chunk: number,
    highWaterMark: number,
    signal: AbortSignal | undefined,
  ) {
    super({ highWaterMark });
    this.pos = start;
    if (signal) {
      // The same error as the web stream's: a BlockError `aborted`, not Node's AbortError.
      const stop = () =>
        this.destroy(new BlockError('aborted', 'stream aborted', { path: image.path, cause: signal.reason }));
      if (signal.aborted) stop();
      else signal.addEventListener('abort', stop, { once: true });
      this.once('close', () => signal.removeEventListener('abort', stop));
    }
  }

  override _read(): void {
    if (this.reading) return;
    if (this.pos >= this.end) {
      this.push(null);
      return;
    }
    const n = Math.min(this.chunk, this.end - this.pos);
    const data = Buffer.allocUnsafe(n);
    this.reading = true;
    this.image.readInto(this.pos, data).then(
      () => {
        this.reading = false;
        this.pos += n;
        if (this.destroyed) return;
        // push() returning true makes Node call _read again; false waits for the consumer.
        this.push(data);
      },
      (err: unknown) => {
        this.reading = false;
        this.destroy(err instanceof Error ? err : new Error(String(err)));
      },
    );
  }
}

/**
 * The image's bytes (the merged chain) from `start` to `end` as a Node
 * `Readable` in bytes mode. `highWaterMark` (default one chunk) bounds what it
 * reads ahead of the consumer. With `sparse: true`, an object-mode `Readable`
 * of `{ offset, data }` runs that skips holes (see `imageDataRuns`), holding
 * at most one run piece ahead.
 */
export function imageNodeReadable(image: Image, options: NodeReadableOptions = {}): Readable {
  const { start, end, chunk } = streamRange(image, options);
  if (options.sparse) {
    const runs = imageDataRuns(image, options);
    return Readable.from(runs, { objectMode: true, highWaterMark: 1 });
  }
  return new ImageReadable(image, start, end, chunk, options.highWaterMark ?? chunk, options.signal);
}

/**
 * A Node `Writable` that writes what it is given into `image` from `offset`
 * on, one chunk at a time (Node's backpressure stops the producer meanwhile),
 * and flushes the image when it finishes.
 */
export function imageNodeWritable(image: Image, options: { offset?: number; detectZeroes?: boolean } = {}): Writable {
  let pos = options.offset ?? 0;
  return new Writable({
    write(chunk: Buffer, _encoding, callback) {
      const at = pos;
      pos += chunk.length;
      writeImageFromStream(image, [chunk], {
        offset: at,
        flush: false,
        ...(options.detectZeroes !== undefined ? { detectZeroes: options.detectZeroes } : {}),
      }).then(
        () => callback(),
        (err: unknown) => callback(err instanceof Error ? err : new Error(String(err))),
      );
    },
    final(callback) {
      image.flush().then(
        () => callback(),
        (err: unknown) => callback(err instanceof Error ? err : new Error(String(err))),
      );
    },
  });
}
