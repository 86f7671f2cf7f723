/**
 * The host Vfs the copy commands (convert, commit) run their jobs on: the
 * host file system with OS locks (`hostVfs()`), where large reads and writes
 * go to libuv's thread pool on the storage's own descriptor, so that the job's
 * pipeline really overlaps reading one chunk with writing another (the default
 * synchronous I/O runs every call on the main thread, one after the other).
 * Small requests (driver metadata) stay synchronous: a thread-pool round trip
 * costs tens of µs. Flushes (fdatasync) go to the pool too, so that a flush
 * behind the copy does not stop it. Everything else (size, locks, close) is
 * the inner storage's.
 */
import {
  FilterStorage,
  type FileAttributes,
  type Storage,
  type StorageCapabilities,
  type Vfs,
  type VfsOpenOptions,
} from '@blk/core';
import { hostVfs } from './images.js';

/** Requests at least this long use the thread pool. */
const THREADED_MIN = 128 * 1024;

/** Sends large reads and writes of a storage to the thread pool; everything else is the storage's own. */
class ThreadedStorage extends FilterStorage {
  constructor(
    private readonly inner: Storage,
    protected readonly min: number,
  ) {
    super(inner);
  }
  /**
   * Reads and writes change threads, not content: the inner storage's extents (convert skips
   * holes with them) and zeroing (fallocate, so that write-zeroes stays cheap) stay usable. No
   * synchronous read (every read here may go to the pool) and no allocate, as before. The pool
   * calls themselves are forwarded (FilterStorage), so `pool` stays.
   */
  protected override filterCapabilities(below: StorageCapabilities): StorageCapabilities {
    return {
      ...super.filterCapabilities(below),
      extents: below.extents,
      zeroRange: below.zeroRange,
      pool: below.pool,
    };
  }
  /** The same file, read and written on other threads only: its descriptor holds exactly our bytes. */
  override hostFd(): number | undefined {
    return this.inner.hostFd?.();
  }
  override read(offset: number, into: Uint8Array): Promise<number> {
    return into.length >= this.min ? this.inner.readOnPool!(offset, into) : this.inner.read(offset, into);
  }
  override write(offset: number, data: Uint8Array): Promise<void> {
    return data.length >= this.min ? this.inner.writeOnPool!(offset, data) : super.write(offset, data);
  }
  /**
   * fdatasync on the thread pool: the job's pipeline keeps copying while the disk takes what was
   * written before (the copy engine flushes behind itself as it goes; see @blk/jobs' copy.ts).
   */
  override flush(): Promise<void> {
    return this.inner.flushOnPool!();
  }
}

/**
 * ThreadedStorage that keeps the synchronous read of the storage below for reads shorter than the
 * pool threshold (`limits.syncReadMax`): drivers then read small requests synchronously (the core's
 * fast path, no promise per request) and send long ones through `read`, to the pool.
 */
class SmallSyncThreadedStorage extends ThreadedStorage {
  protected override filterCapabilities(below: StorageCapabilities): StorageCapabilities {
    const caps = super.filterCapabilities(below);
    if (!below.syncRead || this.min <= 1) return caps;
    return { ...caps, syncRead: true, limits: { ...caps.limits, syncReadMax: this.min - 1 } };
  }
  override readSync(offset: number, into: Uint8Array): number {
    return super.readSync(offset, into);
  }
}

/** A Vfs whose storages send large reads and writes to the thread pool (when they can: `capabilities.pool`). */
export class ThreadedIoVfs implements Vfs {
  /**
   * `min`: requests at least this long go to the thread pool (0: every read and write).
   * `syncSmallReads`: shorter reads keep the storage's synchronous read (`limits.syncReadMax`).
   */
  constructor(
    private readonly inner: Vfs,
    private readonly min = THREADED_MIN,
    private readonly syncSmallReads = false,
  ) {}
  async open(path: string, options?: VfsOpenOptions): Promise<Storage> {
    const storage = await this.inner.open(path, options);
    if (!storage.capabilities.pool) return storage;
    return this.syncSmallReads
      ? new SmallSyncThreadedStorage(storage, this.min)
      : new ThreadedStorage(storage, this.min);
  }
  stat(path: string) {
    return this.inner.stat(path);
  }
  lstat(path: string) {
    return this.inner.lstat(path);
  }
  realpath(path: string) {
    return this.inner.realpath(path);
  }
  resolve(base: string, path: string) {
    return this.inner.resolve(base, path);
  }
  resolveBacking(imagePath: string, name: string) {
    const inner = this.inner;
    return inner.resolveBacking ? inner.resolveBacking(imagePath, name) : inner.resolve(inner.dirname(imagePath), name);
  }
  dirname(path: string) {
    return this.inner.dirname(path);
  }
  cwd() {
    return this.inner.cwd();
  }
  exists(path: string) {
    return this.inner.exists(path);
  }
  remove(path: string) {
    return this.inner.remove(path);
  }
  rename(from: string, to: string) {
    return this.inner.rename(from, to);
  }
  setAttributes(path: string, attributes: FileAttributes): Promise<void> {
    if (!this.inner.setAttributes) return Promise.reject(new Error('this file system has no owners or modes'));
    return this.inner.setAttributes(path, attributes);
  }
}

let jobVfs_: Vfs | undefined;

/** hostVfs() with threaded large I/O: what blk convert and blk commit run on. */
export function hostJobVfs(): Vfs {
  jobVfs_ ??= new ThreadedIoVfs(hostVfs());
  return jobVfs_;
}

/**
 * The Vfs of a copy job under cache mode `cache`: with `unsafe` (no flush at all) hostVfs() itself,
 * every read and write synchronous on the main thread; otherwise hostJobVfs(). The thread pool is
 * there so that the copy goes on while the disk takes a flush; without flushes all it overlaps is one
 * window's read with another's write, which on a machine with few cores costs more than it saves: a
 * pool round trip per request, and the pool threads compete with the main thread for the cores
 * (measured on 2 cores, `convert -t unsafe -O raw` of a 1 GiB qcow2 25% allocated: 271 ms
 * synchronous against 313 ms on the pool, CPU time 309 against 360 ms, best and median of 21).
 */
export function hostCopyVfs(cache: string): Vfs {
  return cache === 'unsafe' ? hostVfs() : hostJobVfs();
}

let poolVfs_: Vfs | undefined;

/**
 * hostVfs() with every read and write on the thread pool, small ones too:
 * what blk bench runs on, so that its requests are in flight together as
 * qemu-img's aio=threads requests are (not run one by one on the main thread).
 */
export function hostPoolVfs(): Vfs {
  poolVfs_ ??= new ThreadedIoVfs(hostVfs(), 0);
  return poolVfs_;
}

let serveVfs_: Vfs | undefined;

/**
 * hostVfs() as blk serve runs on it: reads and writes of at least 128 KiB (THREADED_MIN) and every
 * flush go to libuv's thread pool, smaller requests stay on the main thread, small reads
 * synchronous (`limits.syncReadMax`: a 4 KiB request costs less than a thread-pool round trip). The event loop then only parses requests and writes replies:
 * a client copying the image in large requests does not hold back the small reads of another
 * connection (bench row nbd-fair), the copy's preads run beside the socket writes on other cores
 * (nbd-copy-raw: about 2x the MiB/s of doing both on the main thread here), and one client's FLUSH
 * does not stop the others.
 */
export function hostServeVfs(): Vfs {
  serveVfs_ ??= new ThreadedIoVfs(hostVfs(), THREADED_MIN, true);
  return serveVfs_;
}
