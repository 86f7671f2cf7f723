/** An in-memory duplex pipe of two ByteStream ends (test helper). */
import type { ByteStream } from '../src/index.js';

class Queue {
  chunks: Uint8Array[] = [];
  buffered = 0;
  ended = false;
  waiter: (() => void) | undefined;
  push(b: Uint8Array): void {
    if (this.ended) return;
    this.chunks.push(b.slice());
    this.buffered += b.length;
    this.wake();
  }
  end(): void {
    this.ended = true;
    this.wake();
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

export function pipe(): [End, End] {
  const ab = new Queue();
  const ba = new Queue();
  const end = (inq: Queue, outq: Queue): End => {
    let closed = false;
    return {
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
