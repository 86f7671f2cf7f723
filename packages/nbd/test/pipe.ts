/** An in-memory duplex pipe of two ByteStream ends (test helper). */
import type { ByteStream } from '../src/index.js';

class Queue {
  chunks: Uint8Array[] = [];
  buffered = 0;
  ended = false;
  waiter: (() => void) | undefined;
  /** ByteStream.onArrival's listener. */
  arrival: ((ended: boolean) => void) | undefined;
  push(b: Uint8Array): void {
    if (this.ended || b.length === 0) return;
    this.chunks.push(b.slice());
    this.buffered += b.length;
    this.wake();
    this.arrival?.(false);
  }
  end(): void {
    if (this.ended) return;
    this.ended = true;
    this.wake();
    this.arrival?.(true);
  }
  skip(n: number): void {
    const c = this.chunks[0]!;
    if (n === c.length) this.chunks.shift();
    else this.chunks[0] = c.subarray(n);
    this.buffered -= n;
  }
  wake(): void {
    const w = this.waiter;
    this.waiter = undefined;
    w?.();
  }
  async take(n: number): Promise<Uint8Array | null> {
    while (this.buffered < n) {
      if (this.ended) {
        if (this.buffered === 0) return null;
        throw new Error('ended inside a message');
      }
      await new Promise<void>((r) => {
        this.waiter = r;
      });
    }
    const out = new Uint8Array(n);
    let o = 0;
    while (o < n) {
      const c = this.chunks[0]!;
      const t = Math.min(c.length, n - o);
      out.set(c.subarray(0, t), o);
      o += t;
      if (t === c.length) this.chunks.shift();
      else this.chunks[0] = c.subarray(t);
    }
    this.buffered -= n;
    return out;
  }
}

export interface End extends ByteStream {
  readonly closed: boolean;
  /** Bytes sent to this end that it has not read yet. */
  readonly unread: number;
  /** Everything sent to this end so far (waits for something, or the end: null). */
  readAvailable(): Promise<Uint8Array | null>;
  /** Ends only the direction from this end to the other (a half close: the other end reads EOF). */
  endWrites(): void;
}

/**
 * Two connected ends. Each write arrives as one chunk (as one `send` on a socket usually does).
 * `peek` (default true): the ends show their received chunks (`ByteStream.peek`, `skip`,
 * `onArrival`), as a socket does, so the transmission's small-read fast path runs; false: they
 * only offer `readExactly` (the general path).
 */
export function pipe(options: { peek?: boolean } = {}): [End, End] {
  const ab = new Queue();
  const ba = new Queue();
  const end = (inq: Queue, outq: Queue): End => {
    let closed = false;
    const sync =
      options.peek === false
        ? {}
        : {
            peek: () => inq.chunks[0],
            skip: (n: number) => inq.skip(n),
            onArrival: (l: ((ended: boolean) => void) | undefined) => {
              inq.arrival = l;
              if (inq.ended) l?.(true);
            },
          };
    return {
      ...sync,
      get closed() {
        return closed;
      },
      get unread() {
        return inq.buffered;
      },
      endWrites: () => outq.end(),
      readAvailable: async () => {
        while (inq.buffered === 0) {
          if (inq.ended) return null;
          await new Promise<void>((r) => {
            inq.waiter = r;
          });
        }
        return inq.take(inq.buffered);
      },
      readExactly: (n) => inq.take(n),
      write: async (d) => {
        if (closed) throw new Error('closed');
        outq.push(d);
      },
      close: () => {
        closed = true;
        inq.end();
        outq.end();
      },
    };
  };
  return [end(ba, ab), end(ab, ba)];
}
