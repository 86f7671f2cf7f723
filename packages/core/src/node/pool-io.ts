import * as fs from 'node:fs';
import { ioError } from '../errors.js';

/**
 * Runs an fs callback call as a promise. io: 'async' uses the callback API
 * on the descriptor rather than FileHandle: an awaited FileHandle.read of
 * 4 KiB costs about 2.5 times the CPU of fs.read (its promise request and
 * result object), which at 32 reads in flight halves the throughput.
 */
export function callback<T>(call: (cb: (err: NodeJS.ErrnoException | null, value: T) => void) => void): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    call((err, value) => (err ? reject(err) : resolve(value)));
  });
}

/**
 * Calls on libuv's thread pool for one descriptor of NodeFileStorage (every
 * call in `io: 'async'` mode, readOnPool/writeOnPool in either), counted
 * until they settle: close() waits for them (`whenIdle`) before closing the
 * descriptor. A call still running on a closed descriptor number could read
 * or write whatever file is opened next under that number.
 */
export class PoolIo {
  private inFlight = 0;
  private onIdle: (() => void) | undefined;

  constructor(
    private readonly path: string,
    private readonly fd: number,
  ) {}

  /**
   * fs.read / fs.write calls on the thread pool until `buf` is
   * done (a short count continues where it stopped; a read stops at the end
   * of the file), as one promise of the bytes done.
   */
  transfer(write: boolean, offset: number, buf: Uint8Array): Promise<number> {
    this.inFlight++;
    return new Promise<number>((resolve, reject) => {
      let done = 0;
      const fail = (err: unknown) => {
        this.settled();
        reject(ioError(this.path, write ? 'write' : 'read', err, offset + done));
      };
      const finish = () => {
        this.settled();
        resolve(done);
      };
      const next = (err: NodeJS.ErrnoException | null, n: number): void => {
        if (err) return fail(err);
        if (write && n <= 0) return fail(new Error('short write: the kernel accepted no bytes'));
        if (n === 0) return finish();
        done += n;
        step();
      };
      const step = (): void => {
        if (done >= buf.length) return finish();
        try {
          if (write) fs.write(this.fd, buf, done, buf.length - done, offset + done, next);
          else fs.read(this.fd, buf, done, buf.length - done, offset + done, next);
        } catch (err) {
          fail(err);
        }
      };
      step();
    });
  }

  /** One fs callback call on the descriptor, counted until it settles. */
  call<T>(run: (cb: (err: NodeJS.ErrnoException | null, value: T) => void) => void): Promise<T> {
    this.inFlight++;
    const settled = () => this.settled();
    const done = callback(run);
    done.then(settled, settled);
    return done;
  }

  /** Resolves once no call is in flight (at once when none is). One waiter at a time (close). */
  whenIdle(): Promise<void> {
    if (this.inFlight === 0) return Promise.resolve();
    return new Promise<void>((resolve) => {
      this.onIdle = resolve;
    });
  }

  private settled(): void {
    if (--this.inFlight === 0 && this.onIdle !== undefined) {
      const wake = this.onIdle;
      this.onIdle = undefined;
      wake();
    }
  }
}
