/**
 * Output that respects backpressure. A write to a pipe whose reader is slow
 * (or stopped: `blk map | less`) is queued in memory by Node; without
 * waiting for 'drain' a long listing grows that queue without bound (over
 * a gigabyte for a fragmented 1 TiB image, then ENOBUFS). Writers here wait
 * for the queue to drain whenever the stream says it is full.
 */

/** Resolves once `stream` has room again (or is gone: a closed pipe ends the command through its 'error' handler). */
export function drained(
  stream: NodeJS.WritableStream & { writableNeedDrain?: boolean; destroyed?: boolean },
): Promise<void> {
  if (!stream.writableNeedDrain || stream.destroyed) return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      stream.off('drain', done);
      stream.off('close', done);
      stream.off('error', done);
      resolve();
    };
    stream.on('drain', done);
    stream.on('close', done);
    stream.on('error', done);
  });
}

/** Writes `text` to `stream`, waiting while the stream's buffer is full. */
export async function writeWithBackpressure(stream: NodeJS.WritableStream, text: string): Promise<void> {
  if (!stream.write(text)) await drained(stream);
}

/**
 * Up to this many characters of output are gathered before one write. Small enough that the pieces held do not
 * survive young-generation GCs in bulk (256 Ki made V8 grow its new space: `blk map` of a 1 TiB qcow2 went from
 * ~62 to ~77 MiB of RSS), large enough that a write costs little next to the lines it carries.
 */
const OUTPUT_PIECE = 16 * 1024;

/**
 * Gathers small pieces of text into large writes to `stream` (one write per
 * line costs more than making the line), waiting for the stream to drain
 * between writes, so at most about two pieces are held at any time.
 */
export class PieceWriter {
  private parts: string[] = [];
  private size = 0;

  constructor(private readonly stream: NodeJS.WritableStream = process.stdout) {}

  /** Adds `text`; returns a promise only when a piece was written and the stream is full (await it then). */
  write(text: string): Promise<void> | undefined {
    this.parts.push(text);
    this.size += text.length;
    return this.size >= OUTPUT_PIECE ? this.flush() : undefined;
  }

  /** Writes what was gathered and waits until the stream has room. */
  async flush(): Promise<void> {
    if (this.parts.length === 0) return;
    const text = this.parts.join('');
    this.parts = [];
    this.size = 0;
    await writeWithBackpressure(this.stream, text);
  }
}
