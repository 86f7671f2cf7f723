import * as fs from 'node:fs';
import { BlockError, ioError } from '../errors.js';
import { checkOffset } from '../checks.js';
import { storageCapabilities, type Storage, type StorageCapabilities, type StorageExtent } from '../storage/storage.js';
import { openDeviceSize } from './device-size.js';
import { callback, PoolIo } from './pool-io.js';
import { refusePseudoFile } from './pseudo-fs.js';
import { nodeTypeOf, specialFile, typeOfStats } from './stat-type.js';
import { SyncIo } from './sync-io.js';
import type { PositionalSyscalls } from './syscalls.js';

export { sysfsDeviceSize } from './device-size.js';
export { specialFile, typeOfStats } from './stat-type.js';
export type { PositionalSyscalls } from './syscalls.js';

/**
 * How a NodeFileStorage talks to the kernel.
 * - `sync`: positional reads and writes done synchronously behind the
 *   Promise API (`syscalls` when given, else `fs.readSync`/`writeSync`). On
 *   a file in the page cache a 4 KiB read costs about 1.5 µs this way,
 *   against 30-50 µs for an awaited read on libuv's thread pool (a round
 *   trip through it). The price: while the call runs, the event loop waits,
 *   which is what you want for local disks and not for slow network file
 *   systems. (sync-io.ts)
 * - `async`: every call goes to libuv's thread pool (`fs.read` and friends
 *   with callbacks on the descriptor); the event loop stays free during
 *   every call, and many requests in flight overlap. (pool-io.ts)
 */
export type NodeIoMode = 'sync' | 'async';

export interface NodeFileStorageOptions {
  readOnly?: boolean;
  /** Accept a block device (default: regular files only; see VfsOpenOptions.blockDevices). */
  blockDevices?: boolean;
  /**
   * Accept files of kernel pseudo file systems (/proc, /sys, cgroup, ...), which are refused by
   * default (pseudo-fs.ts): for a caller that opens such a file on purpose, never for paths read
   * from images. The VFS never sets it.
   */
  pseudoFiles?: boolean;
  io?: NodeIoMode;
  /** `io: 'sync'` only: system calls to use instead of Node's fs ones. */
  syscalls?: PositionalSyscalls;
}

const RESOLVED: Promise<void> = Promise.resolve();

/**
 * The numeric open(2) flags for an fs flag string, with O_NONBLOCK: opening
 * a FIFO (or a device that waits for a carrier) must never block. On regular
 * files and block devices O_NONBLOCK changes nothing. No O_TRUNC: a caller
 * that wants the file emptied truncates it once it knows what it opened.
 */
function openFlags(flags: string): number {
  const c = fs.constants;
  // 'w+' truncates after the open (see NodeFileStorage.open); 'rc+' creates a missing file and keeps an existing one.
  const base: Record<string, number> = {
    r: c.O_RDONLY,
    'r+': c.O_RDWR,
    'rc+': c.O_RDWR | c.O_CREAT,
    'w+': c.O_RDWR | c.O_CREAT,
    'wx+': c.O_RDWR | c.O_CREAT | c.O_EXCL,
  };
  const value = base[flags];
  if (value === undefined) throw new BlockError('invalid-argument', `unsupported open flags '${flags}'`);
  return value | c.O_NONBLOCK | c.O_NOCTTY;
}

/**
 * The storage limits for fstat's `st_blksize`: byte-granular requests (see
 * `NodeFileStorage.capabilities`), and the block size as the preferred
 * transfer when it is a sane power of two (some file systems report 0, and
 * FUSE ones anything).
 */
function preferredLimits(blockSize: number | undefined): { requestAlignment: number; preferredTransfer?: number } {
  const sane =
    blockSize !== undefined
    && Number.isSafeInteger(blockSize)
    && blockSize >= 512
    && blockSize <= 64 * 1024 * 1024
    && (blockSize & (blockSize - 1)) === 0;
  return sane ? { requestAlignment: 1, preferredTransfer: blockSize } : { requestAlignment: 1 };
}

/** A local file (or block device) through Node's fs module, in `sync` or `async` I/O mode. */
export class NodeFileStorage implements Storage {
  /** The file descriptor (for OS advisory locks taken by @blk/native). */
  readonly fd: number;
  /** io: 'async': every call goes to libuv's thread pool (fs callbacks on the descriptor). */
  private readonly async: boolean;
  /** Thread-pool calls on the descriptor (every call in io: 'async', readOnPool/writeOnPool in either mode). */
  private readonly pool: PoolIo;
  /** io: 'sync': the calls on the main thread. */
  private readonly sync: SyncIo;
  private closed = false;
  /**
   * Something was changed through this storage since the last flush began (set when a write,
   * truncate, allocate or zeroRange starts and again when it completes): a flush of a clean storage
   * has nothing of its own to make durable and skips fdatasync (an image opened writable and closed
   * without a write costs no disk flush).
   */
  private dirty = false;
  readonly io: NodeIoMode;
  /**
   * What this storage can do: write and flush unless read-only; synchronous
   * reads in `io: 'sync'` mode; extents, allocation and zero ranges when the
   * `syscalls` given offer them (allocation not on block devices, which
   * cannot grow: posix_fallocate fails on them).
   *
   * Limits: `preferredTransfer` is fstat's `st_blksize` (the file system's
   * block size; for a block device, the kernel's block size for it, at least
   * its logical block size). `requestAlignment` is 1, on block devices too:
   * the storage does buffered I/O (no O_DIRECT), and the kernel's page cache
   * read-modify-writes a partial logical block itself, so no request needs
   * aligning. A storage opened with O_DIRECT would have to declare the
   * device's logical block size here instead.
   */
  readonly capabilities: StorageCapabilities;
  /**
   * Synchronous read (see `Storage.readSync`): present in `io: 'sync'` mode
   * only, undefined in `io: 'async'` mode so that nothing blocks the event loop there.
   */
  readonly readSync: ((offset: number, into: Uint8Array) => number) | undefined;
  /**
   * Where data and holes are (see `Storage.extentAt`): present when the
   * `syscalls` given can seek for data and holes, else undefined.
   */
  readonly extentAt: ((offset: number, length: number) => Promise<StorageExtent | undefined>) | undefined;
  /** Zeroing without a buffer (see `Storage.zeroRange`): present when the `syscalls` given can zero ranges. */
  readonly zeroRange: ((offset: number, length: number, punch: boolean) => Promise<boolean>) | undefined;

  /** Space reservation (see `Storage.allocate`): present when the `syscalls` given can fallocate. */
  readonly allocate: ((offset: number, length: number) => Promise<void>) | undefined;

  /** The system calls in use instead of Node's fs ones (`io: 'sync'` with `syscalls` given), else undefined. */
  readonly syscalls: PositionalSyscalls | undefined;

  /** The storage is a block device: its size comes from the device, and it cannot grow or shrink. */
  readonly blockDevice: boolean;
  /** A block device's rdev (for the /sys/dev/block fallback of its size). */
  private readonly rdev: bigint;

  private constructor(
    readonly path: string,
    fd: number,
    readonly readOnly: boolean,
    io: NodeIoMode,
    syscalls?: PositionalSyscalls,
    device?: { rdev: bigint },
    blockSize?: number,
  ) {
    this.fd = fd;
    this.blockDevice = device !== undefined;
    this.rdev = device?.rdev ?? 0n;
    this.io = io;
    this.async = io === 'async';
    this.syscalls = io === 'sync' ? syscalls : undefined;
    this.pool = new PoolIo(path, fd);
    this.sync = new SyncIo(path, fd, this.syscalls);
    this.extentAt = this.sync.hasExtents ? NodeFileStorage.prototype.findExtent : undefined;
    this.readSync = io === 'sync' ? NodeFileStorage.prototype.readNow : undefined;
    this.allocate = this.syscalls?.allocate ? NodeFileStorage.prototype.fallocate : undefined;
    this.zeroRange = this.syscalls?.zeroRange ? NodeFileStorage.prototype.zeroRangeNow : undefined;
    this.capabilities = storageCapabilities({
      write: !readOnly,
      flush: !readOnly,
      syncRead: this.readSync !== undefined,
      extents: this.extentAt !== undefined,
      allocate: this.allocate !== undefined && !this.blockDevice,
      zeroRange: this.zeroRange !== undefined,
      pool: true,
      limits: preferredLimits(blockSize),
    });
  }

  /**
   * Opens a regular file (or, with `blockDevices`, a block device); anything
   * else is refused with `special-file`, and the open never blocks. `flags`:
   * 'r', 'r+', 'wx+' (create, fail if it exists), 'rc+' (create if missing),
   * 'w+' (create or truncate: the truncation happens once the file is known
   * to be a regular file; a block device is left as it is).
   */
  static async open(path: string, options: NodeFileStorageOptions & { flags?: string } = {}): Promise<NodeFileStorage> {
    const readOnly = options.readOnly ?? false;
    const flagName = options.flags ?? (readOnly ? 'r' : 'r+');
    const flags = openFlags(flagName);
    const io = options.io ?? 'sync';
    let fd: number;
    try {
      fd = io === 'async' ? await callback<number>((cb) => fs.open(path, flags, cb)) : fs.openSync(path, flags);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'EEXIST') throw new BlockError('exists', 'file exists', { path, code, cause: err });
      if (code === 'ENOENT') throw new BlockError('io', 'no such file or directory', { path, code, cause: err });
      // EISDIR (a directory opened for writing), ENXIO (a socket; a FIFO without a reader), ENODEV.
      if (code === 'EISDIR' || code === 'ENXIO' || code === 'ENODEV') {
        throw specialFile(path, nodeTypeOf(path), options.blockDevices === true, err);
      }
      throw ioError(path, 'open', err);
    }
    // What was opened, not what a stat before the open saw: the path may have been swapped meanwhile.
    let device: { rdev: bigint } | undefined;
    let blockSize: number | undefined;
    try {
      const st = fs.fstatSync(fd, { bigint: true });
      blockSize = Number(st.blksize);
      if (st.isBlockDevice() && options.blockDevices) device = { rdev: st.rdev };
      else if (!st.isFile()) throw specialFile(path, typeOfStats(st), options.blockDevices === true);
      else if (options.pseudoFiles !== true) refusePseudoFile(fd, path, !readOnly);
      if (device === undefined && flagName === 'w+') fs.ftruncateSync(fd, 0);
    } catch (err) {
      fs.closeSync(fd);
      throw err instanceof BlockError ? err : ioError(path, 'stat', err);
    }
    return io === 'async'
      ? new NodeFileStorage(path, fd, readOnly, io, undefined, device, blockSize)
      : new NodeFileStorage(path, fd, readOnly, io, options.syscalls, device, blockSize);
  }

  // read and write are plain functions returning promises, not async ones: in io: 'async' mode
  // one promise per request instead of a chain of them is a third of the main thread's work.
  read(offset: number, into: Uint8Array): Promise<number> {
    if (this.async) return this.readOnPool(offset, into);
    try {
      return Promise.resolve(this.readNow(offset, into));
    } catch (err) {
      return Promise.reject(err);
    }
  }

  /**
   * A read on libuv's thread pool whatever the io mode: what io: 'async'
   * does for every read, and what a copy job asks for its large reads, so
   * that reading one piece overlaps writing another. close() waits for it.
   */
  readOnPool(offset: number, into: Uint8Array): Promise<number> {
    try {
      this.checkOpen();
      checkOffset(offset, 'offset', this.path);
    } catch (err) {
      return Promise.reject(err);
    }
    return this.pool.transfer(false, offset, into);
  }

  /** `readSync` of `io: 'sync'` mode (called as a method of this storage). */
  private readNow(offset: number, into: Uint8Array): number {
    this.checkOpen();
    checkOffset(offset, 'offset', this.path);
    return this.sync.read(offset, into);
  }

  /** `extentAt` over lseek SEEK_DATA/SEEK_HOLE (as QEMU's file-posix find_allocation). */
  private async findExtent(offset: number, length: number): Promise<StorageExtent | undefined> {
    this.checkOpen();
    checkOffset(offset, 'offset', this.path);
    checkOffset(length, 'length', this.path);
    if (length === 0) throw new BlockError('invalid-argument', 'extentAt of 0 bytes', { path: this.path, offset });
    return this.sync.extentAt(offset, length);
  }

  /** `allocate` through the syscalls' posix_fallocate. */
  private async fallocate(offset: number, length: number): Promise<void> {
    this.checkWritable();
    checkOffset(offset, 'offset', this.path);
    checkOffset(length, 'length', this.path);
    if (!Number.isSafeInteger(offset + length)) {
      throw new BlockError('out-of-range', `allocation end ${offset + length} is beyond 2^53 - 1`, {
        path: this.path,
        offset,
      });
    }
    if (length === 0) return;
    this.dirty = true;
    this.sync.allocate(offset, length);
    this.dirty = true;
  }

  /** `zeroRange` over fallocate(2); false where the file system cannot (the caller writes zeros). */
  private async zeroRangeNow(offset: number, length: number, punch: boolean): Promise<boolean> {
    this.checkWritable();
    checkOffset(offset, 'offset', this.path);
    checkOffset(offset + length, 'end offset', this.path);
    if (length === 0) return true;
    this.dirty = true;
    const done = this.sync.zeroRange(offset, length, punch);
    this.dirty = true;
    return done;
  }

  write(offset: number, data: Uint8Array): Promise<void> {
    if (this.async) return this.writeOnPool(offset, data);
    try {
      this.checkWriteRange(offset, data);
      this.dirty = true;
      this.sync.write(offset, data);
      this.dirty = true;
      return RESOLVED;
    } catch (err) {
      return Promise.reject(err);
    }
  }

  /** `readOnPool`'s counterpart for writes. */
  writeOnPool(offset: number, data: Uint8Array): Promise<void> {
    try {
      this.checkWriteRange(offset, data);
    } catch (err) {
      return Promise.reject(err);
    }
    this.dirty = true;
    return this.pool.transfer(true, offset, data).then(() => {
      this.dirty = true;
    });
  }

  private checkWriteRange(offset: number, data: Uint8Array): void {
    this.checkWritable();
    // Both ends: Node takes position -1 as "the current file position" and would write there.
    checkOffset(offset, 'offset', this.path);
    checkOffset(offset + data.length, 'end offset', this.path);
  }

  async size(): Promise<number> {
    this.checkOpen();
    try {
      if (this.blockDevice) return openDeviceSize(this.fd, this.rdev, this.syscalls);
      return this.async
        ? (await this.pool.call<fs.Stats>((cb) => fs.fstat(this.fd, cb))).size
        : fs.fstatSync(this.fd).size;
    } catch (err) {
      throw ioError(this.path, 'stat', err);
    }
  }

  /**
   * Sets the length. A block device cannot change its size: shrinking is a
   * no-op (the tail keeps what it holds) and growing fails, as with QEMU's
   * host_device ("Cannot grow device files").
   */
  async truncate(size: number): Promise<void> {
    this.checkWritable();
    checkOffset(size, 'size', this.path);
    if (this.blockDevice) {
      const have = await this.size();
      if (size > have) {
        throw new BlockError('not-supported', `cannot grow a block device of ${have} bytes to ${size} bytes`, {
          path: this.path,
        });
      }
      return;
    }
    try {
      this.dirty = true;
      if (this.async) await this.pool.call<void>((cb) => fs.ftruncate(this.fd, size, cb));
      else fs.ftruncateSync(this.fd, size);
      this.dirty = true;
    } catch (err) {
      throw ioError(this.path, 'truncate', err);
    }
  }

  async flush(): Promise<void> {
    this.checkOpen();
    if (this.readOnly) return;
    if (this.async) return this.flushOnPool();
    try {
      if (!this.dirty) return;
      this.dirty = false;
      fs.fdatasyncSync(this.fd);
    } catch (err) {
      this.dirty = true; // not made durable: the next flush tries again
      throw ioError(this.path, 'flush', err);
    }
  }

  /**
   * `flush` (fdatasync) on libuv's thread pool whatever the io mode: the
   * event loop goes on (a copy job keeps reading and writing other pieces
   * while the disk takes what was written before). Covers every write that
   * completed before the call, as `flush` does; close() waits for it.
   */
  async flushOnPool(): Promise<void> {
    this.checkOpen();
    if (this.readOnly) return;
    try {
      if (!this.dirty) return;
      // Cleared before the sync starts: a change completing during it sets it again for the next flush.
      this.dirty = false;
      await this.pool.call<void>((cb) => fs.fdatasync(this.fd, cb));
    } catch (err) {
      this.dirty = true; // not made durable: the next flush tries again
      throw ioError(this.path, 'flush', err);
    }
  }

  /** The file's descriptor while open (a file holds the storage's bytes at their own offsets). */
  hostFd(): number | undefined {
    return this.closed ? undefined : this.fd;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    try {
      await this.pool.whenIdle();
      if (this.async) await callback<void>((cb) => fs.close(this.fd, cb));
      else fs.closeSync(this.fd);
    } catch (err) {
      throw ioError(this.path, 'close', err);
    }
  }

  private checkOpen(): void {
    if (this.closed) throw new BlockError('closed', 'storage used after close', { path: this.path });
  }

  private checkWritable(): void {
    this.checkOpen();
    if (this.readOnly) throw new BlockError('read-only', 'file is open read-only', { path: this.path });
  }
}
