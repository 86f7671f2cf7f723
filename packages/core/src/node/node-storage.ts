import * as fs from 'node:fs';
import * as util from 'node:util';
import { constants as osConstants } from 'node:os';
import { BlockError, ioError } from '../errors.js';
import { checkOffset } from '../checks.js';
import { fileTypeName, type FileType, type Storage, type StorageExtent } from '../storage/storage.js';

/**
 * How a NodeFileStorage talks to the kernel.
 * - `sync`: positional reads and writes done synchronously behind the
 *   Promise API (`syscalls` when given, else `fs.readSync`/`writeSync`). On
 *   a file in the page cache a 4 KiB read costs about 1.5 µs this way,
 *   against 30-50 µs for an awaited read on libuv's thread pool (a round
 *   trip through it). The price: while the call runs, the event loop waits,
 *   which is what you want for local disks and not for slow network file
 *   systems.
 * - `async`: every call goes to libuv's thread pool (`fs.read` and friends
 *   with callbacks on the descriptor); the event loop stays free during
 *   every call, and many requests in flight overlap.
 */
export type NodeIoMode = 'sync' | 'async';

/**
 * Positional system calls that can stand in for `fs.readSync`/`fs.writeSync`
 * in `io: 'sync'` mode. Node's calls validate their arguments in JavaScript
 * and wrap each call in a request object: about 0.25 µs of a 1.5 µs 4 KiB
 * read from the page cache (bench/experiments/pread-cost.mjs). A native binding (`nativeSyscalls()` of
 * @blk/native, which @blk/images' host file system uses) skips that.
 * Arguments arrive validated (an open descriptor, an integer position with
 * position + length below 2^53).
 */
export interface PositionalSyscalls {
  /** pread(2) of `into.length` bytes: bytes read (0 at end of file), or -errno. */
  pread(fd: number, into: Uint8Array, position: number): number;
  /** pwrite(2) of all of `data`: bytes written, or -errno. */
  pwrite(fd: number, data: Uint8Array, position: number): number;
  /**
   * lseek(2) with SEEK_DATA: the first data byte at or after `position`, or
   * -errno (-ENXIO when only a hole follows up to the end of the file).
   * With `seekHole`, lets the storage report holes (`Storage.extentAt`).
   */
  seekData?(fd: number, position: number): number;
  /** lseek(2) with SEEK_HOLE: the first hole at or after `position` (the end of the file counts as one), or -errno. */
  seekHole?(fd: number, position: number): number;
  /**
   * posix_fallocate(3) of [offset, offset+length): 0, or -errno (-EOPNOTSUPP
   * where the file system cannot). Lets the storage offer `Storage.allocate`.
   */
  allocate?(fd: number, offset: number, length: number): number;
  /**
   * fallocate(2) keeping the size: punch true deallocates [position,
   * position + length) (PUNCH_HOLE), false zeroes it (ZERO_RANGE); 0 or
   * -errno. Lets the storage offer `Storage.zeroRange`.
   */
  zeroRange?(fd: number, position: number, length: number, punch: boolean): number;
  /**
   * lseek(2) with SEEK_END, offset 0: the size of a block device (fstat says
   * 0 for them), or -errno. Without it, storages ask /sys/dev/block (Linux).
   */
  seekEnd?(fd: number): number;
}

export interface NodeFileStorageOptions {
  readOnly?: boolean;
  /** Accept a block device (default: regular files only; see VfsOpenOptions.blockDevices). */
  blockDevices?: boolean;
  io?: NodeIoMode;
  /** `io: 'sync'` only: system calls to use instead of Node's fs ones. */
  syscalls?: PositionalSyscalls;
}

/**
 * Runs an fs callback call as a promise. io: 'async' uses the callback API
 * on the descriptor rather than FileHandle: an awaited FileHandle.read of
 * 4 KiB costs about 2.5 times the CPU of fs.read (its promise request and
 * result object), which at 32 reads in flight halves the throughput.
 */
function callback<T>(call: (cb: (err: NodeJS.ErrnoException | null, value: T) => void) => void): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    call((err, value) => (err ? reject(err) : resolve(value)));
  });
}

const RESOLVED: Promise<void> = Promise.resolve();
const ignore = (): void => undefined;

/** The error fs would have thrown for `-errno` from a PositionalSyscalls call. */
function syscallError(result: number, syscall: string): NodeJS.ErrnoException {
  const errno = -result;
  // getSystemErrorName answers "Unknown system error -N" for numbers it does not know.
  const name = util.getSystemErrorName(result);
  const code = name.startsWith('E') ? name : `E${errno}`;
  const message = util.getSystemErrorMap().get(result)?.[1] ?? 'system error';
  return Object.assign(new Error(`${code}: ${message}, ${syscall}`), { errno: result, code, syscall });
}

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
    r: c.O_RDONLY, 'r+': c.O_RDWR, 'rc+': c.O_RDWR | c.O_CREAT, 'w+': c.O_RDWR | c.O_CREAT,
    'wx+': c.O_RDWR | c.O_CREAT | c.O_EXCL,
  };
  const value = base[flags];
  if (value === undefined) throw new BlockError('invalid-argument', `unsupported open flags '${flags}'`);
  return value | c.O_NONBLOCK | c.O_NOCTTY;
}

/**
 * A block device's size from /sys/dev/block/MAJOR:MINOR/size (Linux; in
 * 512-byte sectors whatever the device's sector size), without opening it.
 */
export function sysfsDeviceSize(rdev: bigint): number {
  const major = ((rdev >> 8n) & 0xfffn) | ((rdev >> 32n) & ~0xfffn);
  const minor = (rdev & 0xffn) | ((rdev >> 12n) & ~0xffn);
  const file = `/sys/dev/block/${major}:${minor}/size`;
  const text = fs.readFileSync(file, 'utf8').trim();
  if (!/^[0-9]+$/.test(text)) throw new Error(`unexpected size '${text}' in ${file}`);
  const size = Number(text) * 512;
  if (!Number.isSafeInteger(size)) throw new Error(`device size of ${text} sectors is out of range`);
  return size;
}

/** A node's type from fs.Stats. */
export function typeOfStats(st: fs.Stats | fs.BigIntStats): FileType {
  if (st.isFile()) return 'file';
  if (st.isDirectory()) return 'directory';
  if (st.isSymbolicLink()) return 'symlink';
  if (st.isBlockDevice()) return 'block-device';
  if (st.isCharacterDevice()) return 'char-device';
  if (st.isFIFO()) return 'fifo';
  return 'socket';
}

function nodeTypeOf(path: string): FileType | undefined {
  try {
    return typeOfStats(fs.statSync(path));
  } catch {
    return undefined;
  }
}

/** The `special-file` error for a path that is no image file. */
export function specialFile(path: string, type: FileType | undefined, devicesAllowed: boolean, cause?: unknown): BlockError {
  const what = fileTypeName(type);
  const wanted = devicesAllowed ? 'a regular file or a block device' : 'a regular file';
  return new BlockError('special-file', `is ${what.startsWith('not') ? 'something else' : what}, not ${wanted}`, { path, cause });
}

/** A local file through Node's fs module. */
export class NodeFileStorage implements Storage {
  /** The file descriptor (for OS advisory locks taken by @blk/native). */
  readonly fd: number;
  /** io: 'async': every call goes to libuv's thread pool (fs callbacks on the descriptor). */
  private readonly async: boolean;
  /**
   * Thread-pool calls on the descriptor not finished yet (every call in
   * io: 'async', readOnPool/writeOnPool in either mode). close() waits for
   * them before closing it: a call still running on a closed descriptor
   * number could read or write whatever file is opened next under that
   * number. (FileHandle, which this mode used before, did the same.)
   */
  private inFlight = 0;
  private onIdle: (() => void) | undefined;
  private closed = false;
  readonly io: NodeIoMode;
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

  private constructor(readonly path: string, fd: number, readonly readOnly: boolean, io: NodeIoMode,
    syscalls?: PositionalSyscalls, device?: { rdev: bigint }) {
    this.fd = fd;
    this.blockDevice = device !== undefined;
    this.rdev = device?.rdev ?? 0n;
    this.io = io;
    this.async = io === 'async';
    this.syscalls = io === 'sync' ? syscalls : undefined;
    this.extentAt = this.syscalls?.seekData && this.syscalls.seekHole ? NodeFileStorage.prototype.findExtent : undefined;
    this.readSync = io === 'sync' ? NodeFileStorage.prototype.readNow : undefined;
    this.allocate = this.syscalls?.allocate ? NodeFileStorage.prototype.fallocate : undefined;
    this.zeroRange = this.syscalls?.zeroRange ? NodeFileStorage.prototype.zeroRangeNow : undefined;
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
    try {
      const st = fs.fstatSync(fd, { bigint: true });
      if (st.isBlockDevice() && options.blockDevices) device = { rdev: st.rdev };
      else if (!st.isFile()) throw specialFile(path, typeOfStats(st), options.blockDevices === true);
      else if (flagName === 'w+') fs.ftruncateSync(fd, 0);
    } catch (err) {
      fs.closeSync(fd);
      throw err instanceof BlockError ? err : ioError(path, 'stat', err);
    }
    return io === 'async' ? new NodeFileStorage(path, fd, readOnly, io, undefined, device)
      : new NodeFileStorage(path, fd, readOnly, io, options.syscalls, device);
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
    return this.transfer(false, offset, into);
  }

  /** `readSync` of `io: 'sync'` mode (called as a method of this storage). */
  private readNow(offset: number, into: Uint8Array): number {
    this.checkOpen();
    checkOffset(offset, 'offset', this.path);
    let done = 0;
    try {
      while (done < into.length) {
        const n = this.preadNow(done === 0 ? into : into.subarray(done), offset + done);
        if (n === 0) break;
        done += n;
      }
    } catch (err) {
      throw ioError(this.path, 'read', err, offset + done);
    }
    return done;
  }

  /** One positional read in `io: 'sync'` mode (the caller loops over short counts). */
  private preadNow(into: Uint8Array, position: number): number {
    const sys = this.syscalls;
    if (sys === undefined) return fs.readSync(this.fd, into, 0, into.length, position);
    const n = sys.pread(this.fd, into, position);
    if (n < 0) throw syscallError(n, 'read');
    return n;
  }

  private pwriteNow(data: Uint8Array, position: number): number {
    const sys = this.syscalls;
    if (sys === undefined) return fs.writeSync(this.fd, data, 0, data.length, position);
    const n = sys.pwrite(this.fd, data, position);
    if (n < 0) throw syscallError(n, 'write');
    return n;
  }

  /** `extentAt` over lseek SEEK_DATA/SEEK_HOLE (as QEMU's file-posix find_allocation). */
  private async findExtent(offset: number, length: number): Promise<StorageExtent | undefined> {
    this.checkOpen();
    checkOffset(offset, 'offset', this.path);
    checkOffset(length, 'length', this.path);
    if (length === 0) throw new BlockError('invalid-argument', 'extentAt of 0 bytes', { path: this.path, offset });
    const sys = this.syscalls!;
    const data = this.seekResult(sys.seekData!(this.fd, offset), offset);
    if (data === undefined) return undefined;
    // No data from here to the end of the file, or a hole up to the next data.
    if (data === 'none') return { data: false, length };
    if (data > offset) return { data: false, length: Math.min(length, data - offset) };
    const hole = this.seekResult(sys.seekHole!(this.fd, offset), offset);
    // The file changed between the two calls (truncated under us): say nothing rather than guess.
    if (hole === undefined || hole === 'none' || hole <= offset) return undefined;
    return { data: true, length: Math.min(length, hole - offset) };
  }

  /** `allocate` through the syscalls' posix_fallocate. */
  private async fallocate(offset: number, length: number): Promise<void> {
    this.checkWritable();
    checkOffset(offset, 'offset', this.path);
    checkOffset(length, 'length', this.path);
    if (!Number.isSafeInteger(offset + length)) {
      throw new BlockError('out-of-range', `allocation end ${offset + length} is beyond 2^53 - 1`, { path: this.path, offset });
    }
    if (length === 0) return;
    const result = this.syscalls!.allocate!(this.fd, offset, length);
    if (result === 0) return;
    const errno = -result;
    if (errno === osConstants.errno.EOPNOTSUPP || errno === osConstants.errno.ENOTSUP || errno === osConstants.errno.ENOSYS) {
      throw new BlockError('not-supported', 'the file system cannot preallocate (fallocate)', { path: this.path, offset });
    }
    throw ioError(this.path, 'fallocate', syscallError(result, 'posix_fallocate'), offset);
  }

  /** `zeroRange` over fallocate(2); false where the file system cannot (the caller writes zeros). */
  private async zeroRangeNow(offset: number, length: number, punch: boolean): Promise<boolean> {
    this.checkWritable();
    checkOffset(offset, 'offset', this.path);
    checkOffset(offset + length, 'end offset', this.path);
    if (length === 0) return true;
    const result = this.syscalls!.zeroRange!(this.fd, offset, length, punch);
    if (result >= 0) return true;
    const errno = -result;
    if (errno === osConstants.errno.EOPNOTSUPP || errno === osConstants.errno.ENOTSUP
      || errno === osConstants.errno.ENOSYS || errno === osConstants.errno.EINVAL) return false;
    throw ioError(this.path, 'write', syscallError(result, 'fallocate'), offset);
  }

  /** A seek's position; 'none' for ENXIO; undefined where the file system cannot tell. */
  private seekResult(result: number, offset: number): number | 'none' | undefined {
    if (result >= 0) return result;
    const errno = -result;
    if (errno === osConstants.errno.ENXIO) return 'none';
    if (errno === osConstants.errno.EINVAL || errno === osConstants.errno.EOPNOTSUPP
      || errno === osConstants.errno.ENOTSUP) return undefined;
    throw ioError(this.path, 'seek', syscallError(result, 'lseek'), offset);
  }

  write(offset: number, data: Uint8Array): Promise<void> {
    if (this.async) return this.writeOnPool(offset, data);
    try {
      this.checkWriteRange(offset, data);
      this.writeNow(offset, data);
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
    return this.transfer(true, offset, data).then(ignore);
  }

  private checkWriteRange(offset: number, data: Uint8Array): void {
    this.checkWritable();
    // Both ends: Node takes position -1 as "the current file position" and would write there.
    checkOffset(offset, 'offset', this.path);
    checkOffset(offset + data.length, 'end offset', this.path);
  }

  /** Writes all of `data` synchronously (io: 'sync'). */
  private writeNow(offset: number, data: Uint8Array): void {
    let done = 0;
    try {
      while (done < data.length) {
        const n = this.pwriteNow(done === 0 ? data : data.subarray(done), offset + done);
        if (n <= 0) throw new Error('short write: the kernel accepted no bytes');
        done += n;
      }
    } catch (err) {
      throw ioError(this.path, 'write', err, offset + done);
    }
  }

  /**
   * fs.read / fs.write calls on the thread pool until `buf` is
   * done (a short count continues where it stopped; a read stops at the end
   * of the file), as one promise of the bytes done.
   */
  private transfer(write: boolean, offset: number, buf: Uint8Array): Promise<number> {
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

  /** One fs callback call on the descriptor (io: 'async'), counted in `inFlight` until it settles. */
  private call<T>(run: (cb: (err: NodeJS.ErrnoException | null, value: T) => void) => void): Promise<T> {
    this.inFlight++;
    const settled = () => this.settled();
    const done = callback(run);
    done.then(settled, settled);
    return done;
  }

  private settled(): void {
    if (--this.inFlight === 0 && this.onIdle !== undefined) {
      const wake = this.onIdle;
      this.onIdle = undefined;
      wake();
    }
  }

  async size(): Promise<number> {
    this.checkOpen();
    try {
      if (this.blockDevice) return this.deviceSize();
      return this.async ? (await this.call<fs.Stats>((cb) => fs.fstat(this.fd, cb))).size : fs.fstatSync(this.fd).size;
    } catch (err) {
      throw ioError(this.path, 'stat', err);
    }
  }

  /**
   * A block device's size, as QEMU and UML find it (fstat says 0): lseek
   * SEEK_END through the addon, else /sys/dev/block/MAJOR:MINOR/size (in
   * 512-byte sectors whatever the device's sector size).
   */
  private deviceSize(): number {
    const end = this.syscalls?.seekEnd?.(this.fd);
    if (end !== undefined) {
      if (end < 0) throw syscallError(end, 'lseek');
      return end;
    }
    return sysfsDeviceSize(this.rdev);
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
        throw new BlockError('not-supported', `cannot grow a block device of ${have} bytes to ${size} bytes`,
          { path: this.path });
      }
      return;
    }
    try {
      if (this.async) await this.call<void>((cb) => fs.ftruncate(this.fd, size, cb));
      else fs.ftruncateSync(this.fd, size);
    } catch (err) {
      throw ioError(this.path, 'truncate', err);
    }
  }

  async flush(): Promise<void> {
    this.checkOpen();
    if (this.readOnly) return;
    try {
      if (this.async) await this.call<void>((cb) => fs.fdatasync(this.fd, cb));
      else fs.fdatasyncSync(this.fd);
    } catch (err) {
      throw ioError(this.path, 'flush', err);
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    try {
      if (this.inFlight > 0) await new Promise<void>((resolve) => { this.onIdle = resolve; });
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
