/**
 * The host Vfs the copy commands (convert, commit) run their jobs on: the
 * host file system with OS locks (`hostVfs()`), where large reads and writes
 * go to libuv's thread pool on the storage's own descriptor, so that the job's
 * pipeline really overlaps reading one chunk with writing another (the default
 * synchronous I/O runs every call on the main thread, one after the other).
 * Small requests (driver metadata) stay synchronous: a thread-pool round trip
 * costs tens of µs. Everything else (flush, size, locks, close) is the inner
 * storage's.
 */
import * as fs from 'node:fs';
import type { Storage, Vfs, VfsOpenOptions } from '@blk/core';
import { hostVfs } from './images.js';

/** Requests at least this long use the thread pool. */
const THREADED_MIN = 128 * 1024;

function readAt(fd: number, into: Uint8Array, offset: number): Promise<number> {
  return new Promise((resolve, reject) => {
    fs.read(fd, into, 0, into.length, offset, (err, n) => (err ? reject(err) : resolve(n)));
  });
}

function writeAt(fd: number, data: Uint8Array, offset: number): Promise<number> {
  return new Promise((resolve, reject) => {
    fs.write(fd, data, 0, data.length, offset, (err, n) => (err ? reject(err) : resolve(n)));
  });
}

class ThreadedStorage implements Storage {
  /** Where the file's data and holes are: the inner storage's answer (convert skips holes with it). */
  readonly extentAt: Storage['extentAt'];
  constructor(private readonly inner: Storage, private readonly fd: number) {
    this.extentAt = inner.extentAt?.bind(inner);
  }
  get path(): string { return this.inner.path; }
  get readOnly(): boolean { return this.inner.readOnly; }

  /** Thread-pool calls not finished yet: close() waits for them (the descriptor number must not be reused under them). */
  private inFlight = new Set<Promise<unknown>>();

  private track<T>(call: Promise<T>): Promise<T> {
    this.inFlight.add(call);
    const forget = () => { this.inFlight.delete(call); };
    call.then(forget, forget);
    return call;
  }

  async read(offset: number, into: Uint8Array): Promise<number> {
    if (into.length < THREADED_MIN || !Number.isSafeInteger(offset) || offset < 0) return this.inner.read(offset, into);
    return this.track(this.threadedRead(offset, into));
  }

  private async threadedRead(offset: number, into: Uint8Array): Promise<number> {
    let done = 0;
    while (done < into.length) {
      let n: number;
      try {
        n = await readAt(this.fd, done === 0 ? into : into.subarray(done), offset + done);
      } catch {
        // Let the inner storage report it (its error kinds and messages), from where we stopped.
        return done + await this.inner.read(offset + done, into.subarray(done));
      }
      if (n === 0) break;
      done += n;
    }
    return done;
  }

  async write(offset: number, data: Uint8Array): Promise<void> {
    if (data.length < THREADED_MIN || this.inner.readOnly || !Number.isSafeInteger(offset) || offset < 0
      || !Number.isSafeInteger(offset + data.length)) {
      return this.inner.write(offset, data);
    }
    return this.track(this.threadedWrite(offset, data));
  }

  private async threadedWrite(offset: number, data: Uint8Array): Promise<void> {
    let done = 0;
    while (done < data.length) {
      let n: number;
      try {
        n = await writeAt(this.fd, done === 0 ? data : data.subarray(done), offset + done);
      } catch {
        return this.inner.write(offset + done, data.subarray(done));
      }
      if (n <= 0) return this.inner.write(offset + done, data.subarray(done));
      done += n;
    }
  }

  size(): Promise<number> { return this.inner.size(); }
  truncate(size: number): Promise<void> { return this.inner.truncate(size); }
  flush(): Promise<void> { return this.inner.flush(); }
  async close(): Promise<void> {
    while (this.inFlight.size > 0) await Promise.allSettled([...this.inFlight]);
    return this.inner.close();
  }
}

/** A Vfs whose storages send large reads and writes to the thread pool (when they expose a descriptor). */
export class ThreadedIoVfs implements Vfs {
  constructor(private readonly inner: Vfs) {}
  async open(path: string, options?: VfsOpenOptions): Promise<Storage> {
    const storage = await this.inner.open(path, options);
    const fd = (storage as unknown as { fd?: unknown }).fd;
    const io = (storage as unknown as { io?: unknown }).io;
    return typeof fd === 'number' && io === 'sync' ? new ThreadedStorage(storage, fd) : storage;
  }
  stat(path: string) { return this.inner.stat(path); }
  lstat(path: string) { return this.inner.lstat(path); }
  realpath(path: string) { return this.inner.realpath(path); }
  resolve(base: string, path: string) { return this.inner.resolve(base, path); }
  dirname(path: string) { return this.inner.dirname(path); }
  cwd() { return this.inner.cwd(); }
  exists(path: string) { return this.inner.exists(path); }
  remove(path: string) { return this.inner.remove(path); }
  rename(from: string, to: string) { return this.inner.rename(from, to); }
}

let jobVfs_: Vfs | undefined;

/** hostVfs() with threaded large I/O: what blk convert and blk commit run on. */
export function hostJobVfs(): Vfs {
  jobVfs_ ??= new ThreadedIoVfs(hostVfs());
  return jobVfs_;
}
