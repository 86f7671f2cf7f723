import { BlockError } from '../errors.js';

/** A run of a storage that is stored data or a hole (`Storage.extentAt`). */
export interface StorageExtent {
  data: boolean;
  length: number;
}

/** The I/O sizes a storage prefers or accepts (`StorageCapabilities.limits`). */
export interface StorageLimits {
  /** Offsets and lengths of reads and writes must be multiples of this (1: byte-granular). */
  readonly requestAlignment: number;
  /** The transfer size the storage works best with (a file system's block size, an HTTP range size). */
  readonly preferredTransfer?: number;
  /** The largest single read or write the storage takes. */
  readonly maxTransfer?: number;
  /**
   * With `syncRead`: `readSync` is for reads up to this many bytes; a longer one goes through
   * `read`, which sends it to a thread pool (blk serve's host storage: small reads stay on the
   * main thread, where they cost least, large ones leave its event loop free). Absent: any length.
   */
  readonly syncReadMax?: number;
}

/**
 * What a storage can do, fixed when it is opened (nbdkit's `can_*` answers).
 * Callers test this record, never whether a method exists: a forwarding
 * wrapper (`FilterStorage`) has every method, and its record says which ones
 * work. A capability that is true guarantees the member is present.
 */
export interface StorageCapabilities {
  /** `write()` and `truncate()` work (false: opened read-only, or a storage that cannot write, such as HTTP). */
  readonly write: boolean;
  /** `flush()` makes completed writes durable (false: nothing to flush, or not offered). */
  readonly flush: boolean;
  /** `readSync()` exists and really is synchronous. */
  readonly syncRead: boolean;
  /** `extentAt()` answers (SEEK_DATA/SEEK_HOLE-like). */
  readonly extents: boolean;
  /** `allocate()` (posix_fallocate). */
  readonly allocate: boolean;
  /** `zeroRange()` (fallocate punch/zero). */
  readonly zeroRange: boolean;
  /** Every read is a round trip (HTTP, S3): callers batch and avoid small reads. */
  readonly remote: boolean;
  /**
   * `readOnPool()`, `flushOnPool()` and (with `write`) `writeOnPool()`: the same I/O as `read`,
   * `flush` and `write`, done on a thread pool (libuv's), so that requests overlap one another and
   * the caller's event loop whatever the storage's own I/O mode (`NodeFileStorage`). What a copy job
   * sends its large requests to.
   */
  readonly pool: boolean;
  readonly limits: StorageLimits;
}

/** A capability record: what is given, every other capability false, byte-granular limits. */
export function storageCapabilities(given: Partial<StorageCapabilities> = {}): StorageCapabilities {
  const caps: StorageCapabilities = {
    write: false,
    flush: false,
    syncRead: false,
    extents: false,
    allocate: false,
    zeroRange: false,
    remote: false,
    pool: false,
    ...given,
    limits: Object.freeze({ requestAlignment: 1, ...given.limits }),
  };
  // Derived as nbdkit does: nothing that changes content without write.
  if (!caps.write) return Object.freeze({ ...caps, allocate: false, zeroRange: false });
  return Object.freeze(caps);
}

/**
 * The storage layer under every format driver (QEMU's "protocol" layer,
 * SQLite's VFS file, nbdkit's plugin). Drivers see only this: byte-addressed,
 * positional, stateless I/O on Uint8Array. The same driver then runs on a
 * local file, in memory, over HTTP or under a fault-injecting wrapper in tests.
 * What a storage offers beyond `read`/`size`/`close` is told by
 * `capabilities`, never by whether a method exists.
 */
export interface Storage {
  /** A name for messages: the file path for files, a label otherwise. */
  readonly path: string;
  /** Opened read-only (writes throw `read-only`); a storage that cannot write at all has `capabilities.write` false too. */
  readonly readOnly: boolean;
  /** What this storage can do, computed once when it is opened. */
  readonly capabilities: StorageCapabilities;
  /**
   * Fills `into` from `offset`. Returns the number of bytes read, which is
   * less than `into.length` only when the end of the storage was reached;
   * the bytes past that are left untouched.
   */
  read(offset: number, into: Uint8Array): Promise<number>;
  /**
   * Synchronous `read`, with the same contract (returns the bytes
   * read, fewer only at the end of the storage; throws as `read` would).
   * Usable when `capabilities.syncRead` (a `NodeFileStorage` in `io: 'sync'`
   * mode, `MemoryStorage`); the core's synchronous read path
   * (a `DriverImage.read` that completes at once) is taken only over such storages. A filter that
   * changes `read` turns it off unless it does the same here (`FilterStorage`).
   */
  readSync?(offset: number, into: Uint8Array): number;
  /**
   * Optional: the descriptor of the host file that holds exactly this storage's bytes (byte i of the
   * storage is byte i of the file), for transfers the kernel makes without copying through the
   * process (an NBD server's sendfile). Undefined when there is no such file, or once closed. The
   * descriptor stays the storage's: the caller never closes it, and uses it only while it holds a
   * request of the image open on this storage (close waits for requests in flight).
   */
  hostFd?(): number | undefined;
  /**
   * Usable when `capabilities.extents`: what the storage knows of where its
   * data is (on files, lseek SEEK_DATA/SEEK_HOLE; QEMU's protocol-level block
   * status). Returns the extent starting at `offset`, cut at `length`:
   * `data: false` is a hole that reads as zeros, `data: true` bytes that are
   * stored (which may be zeros too). `length` is at least 1. Past the end of
   * the storage everything is a hole. Undefined when the storage cannot tell
   * here: then every byte counts as data.
   */
  extentAt?(offset: number, length: number): Promise<StorageExtent | undefined>;
  /**
   * Usable when `capabilities.allocate`: reserves space for [offset,
   * offset+length) without changing what it reads (posix_fallocate), growing
   * the storage if the range reaches past its end. Throws `not-supported`
   * where the file system cannot; `preallocate` then writes zeros instead.
   */
  allocate?(offset: number, length: number): Promise<void>;
  /**
   * Usable when `capabilities.zeroRange`: makes [offset, offset + length) read
   * as zeros without writing a buffer (on files, fallocate(2)): `punch` true
   * deallocates the range (a hole, QEMU's write_zeroes with MAY_UNMAP), false
   * zeroes it in place. The storage's length never changes. Resolves false,
   * having changed nothing, when this storage cannot do it here (the file
   * system lacks it): the caller then writes zeros.
   */
  zeroRange?(offset: number, length: number, punch: boolean): Promise<boolean>;
  /**
   * Writes all of `data` at `offset`, growing the storage if needed. Absent
   * on storages that cannot write (`capabilities.write` false); call it
   * through `writeTo` where the storage may lack it.
   */
  write?(offset: number, data: Uint8Array): Promise<void>;
  /** Current length in bytes. */
  size(): Promise<number>;
  /** Sets the length; growing leaves a hole that reads as zeros. Absent with `write`. */
  truncate?(size: number): Promise<void>;
  /** Makes every completed write durable. Absent on storages with nothing to flush. */
  flush?(): Promise<void>;
  /**
   * Usable when `capabilities.pool`: `read` done on a thread pool, so that it
   * overlaps other requests and the caller's event loop (the same contract
   * as `read`; `close()` waits for it).
   */
  readOnPool?(offset: number, into: Uint8Array): Promise<number>;
  /** Usable when `capabilities.pool` and `capabilities.write`: `write` on the thread pool. */
  writeOnPool?(offset: number, data: Uint8Array): Promise<void>;
  /** Usable when `capabilities.pool`: `flush` on the thread pool (covers every write completed before the call). */
  flushOnPool?(): Promise<void>;
  close(): Promise<void>;
}

/** A storage whose write, truncate and flush are present (see `requireWritable`). */
export type WritableStorage = Storage & Required<Pick<Storage, 'write' | 'truncate' | 'flush'>>;

function readOnlyError(storage: Storage, what: string): BlockError {
  return new BlockError('read-only', `${what}: the storage cannot be written (it is read-only)`, {
    path: storage.path,
    code: 'EROFS',
  });
}

/**
 * `storage` as a `WritableStorage`, or a BlockError `read-only` naming the
 * file when it cannot write (`capabilities.write` false or no `write`). What
 * a writable open checks once, up front.
 */
export function requireWritable(storage: Storage, what = 'cannot open for writing'): WritableStorage {
  if (!storage.capabilities.write || storage.write === undefined || storage.truncate === undefined) {
    throw readOnlyError(storage, what);
  }
  return storage as WritableStorage;
}

/** `storage.write`, or a BlockError `read-only` naming the file when the storage has no write. */
export function writeTo(storage: Storage, offset: number, data: Uint8Array): Promise<void> {
  if (storage.write === undefined) return Promise.reject(readOnlyError(storage, `write at offset ${offset}`));
  return storage.write(offset, data);
}

/** `storage.truncate`, or a BlockError `read-only` naming the file when the storage has no truncate. */
export function truncateTo(storage: Storage, size: number): Promise<void> {
  if (storage.truncate === undefined) return Promise.reject(readOnlyError(storage, `truncate to ${size}`));
  return storage.truncate(size);
}

/** `storage.flush`; nothing for a storage without one (nothing it holds can be made more durable). */
export function flushStorage(storage: Storage): Promise<void> {
  return storage.flush === undefined ? Promise.resolve() : storage.flush();
}

/** What the framework needs to know about a file that is not its content. */
export interface FileStat {
  size: number;
  /** Whole seconds of the modification time (floor), as UML and QEMU store it. */
  mtimeSec: number;
  isFile: boolean;
  isDirectory: boolean;
  isSymbolicLink: boolean;
  /** What kind of node this is, when the Vfs can tell (devices, FIFOs and sockets are never images' files). */
  type?: FileType;
  /**
   * Identity of the file (on hosts, device and inode): two paths with the same
   * `id` are one file, whatever links lead to them. Undefined when unknown.
   */
  id?: string;
  /** Number of hard links (a file with several cannot be replaced by a rename without splitting them). */
  nlink?: number;
  /** Permission bits (mode & 0o7777), owner and group, when the Vfs has them. */
  mode?: number;
  uid?: number;
  gid?: number;
}

export type FileType = 'file' | 'directory' | 'symlink' | 'block-device' | 'char-device' | 'fifo' | 'socket';

const FILE_TYPE_NAMES: Record<FileType, string> = {
  file: 'a regular file',
  directory: 'a directory',
  symlink: 'a symbolic link',
  'block-device': 'a block device',
  'char-device': 'a character device',
  fifo: 'a FIFO (named pipe)',
  socket: 'a socket',
};

/** `a FIFO (named pipe)`, `a block device`, ...: a node type for messages. */
export function fileTypeName(type: FileType | undefined): string {
  return type === undefined ? 'not a regular file' : FILE_TYPE_NAMES[type];
}

/** Permission bits and owner to give a file (see `Vfs.setAttributes`). */
export interface FileAttributes {
  mode: number;
  uid: number;
  gid: number;
}

export interface VfsOpenOptions {
  readOnly?: boolean;
  /** Create the file; with `exclusive`, fail with `exists` if it is there already. */
  create?: boolean;
  exclusive?: boolean;
  /**
   * Truncate to zero length on open (only with `create`). Done only once the
   * file is known to be a regular file (and, on a locking Vfs, locked): a
   * refused open changes nothing.
   */
  truncate?: boolean;
  /**
   * May the path be a block device (default false: only regular files)? A
   * device opens in place, with its size; `truncate` leaves it as it is.
   * FIFOs, sockets, character devices and directories are always refused
   * (BlockError `special-file`), and opening never blocks on them.
   */
  blockDevices?: boolean;
  /**
   * Read-only opens only: share the file with a writer (qemu-img's `-U`,
   * force-share=on). A locking Vfs takes no lock that would conflict with a
   * writer's, and reports through `onWarning` when a writer holds the file.
   */
  forceShare?: boolean;
  /** Where a Vfs reports what the caller should know but that is no error (e.g. a writer seen by `forceShare`). */
  onWarning?: (message: string) => void;
}

/**
 * A name space of files: opens storages and answers questions about paths.
 * Paths are POSIX-style strings; `NodeVfs` maps them to the host, `MemoryVfs`
 * keeps everything in memory.
 */
export interface Vfs {
  open(path: string, options?: VfsOpenOptions): Promise<Storage>;
  /** Follows symlinks. Throws BlockError `backing-missing`-neutral `io` with code ENOENT when absent. */
  stat(path: string): Promise<FileStat>;
  /** Does not follow a final symlink. */
  lstat(path: string): Promise<FileStat>;
  /** Canonical absolute path with every symlink resolved. */
  realpath(path: string): Promise<string>;
  /** Absolute form of `path`, resolved against `base` (a directory) when relative: a path the caller gave. */
  resolve(base: string, path: string): string;
  /**
   * Optional: the absolute form of `name`, a file named inside the image at `imagePath` (a backing
   * file, a data file): data read from a file, never a path the user typed. Absent:
   * `resolve(dirname(imagePath), name)`. A Vfs where the two differ defines it (a URL Vfs resolves
   * an image's names against the image's URL; the backing policy then rules on origins).
   */
  resolveBacking?(imagePath: string, name: string): string;
  dirname(path: string): string;
  /** Current directory, for paths given by the user (never for paths read from images). */
  cwd(): string;
  exists(path: string): Promise<boolean>;
  remove(path: string): Promise<void>;
  rename(from: string, to: string): Promise<void>;
  /**
   * Optional: gives `path` these permission bits and owner (convert copies
   * them from the file it replaces). Vfses without owners leave it out.
   */
  setAttributes?(path: string, attributes: FileAttributes): Promise<void>;
}

const ZERO_CHUNK = 1024 * 1024;

/**
 * Reserves [offset, offset+length) of `storage` as preallocation `mode` asks:
 * `falloc` through `Storage.allocate` where the storage and its file system
 * can (else zeros are written, as glibc's posix_fallocate does), `full` by
 * writing zeros. Only for ranges that read as zeros already (new space): the
 * fallback overwrites. `full` reserves the range first where it can, so that
 * a size the file system cannot hold fails at once with ENOSPC instead of
 * after filling the disk with zeros (every other process on it too).
 * `signal` stops the zero-writing loop between chunks (it throws the signal's reason).
 */
export async function preallocate(
  storage: Storage,
  offset: number,
  length: number,
  mode: 'falloc' | 'full',
  options: { signal?: AbortSignal } = {},
): Promise<void> {
  if (length <= 0) return;
  options.signal?.throwIfAborted();
  if (storage.capabilities.allocate) {
    try {
      await storage.allocate!(offset, length);
      if (mode === 'falloc') return;
    } catch (err) {
      if (!(err instanceof BlockError && err.kind === 'not-supported')) throw err;
    }
  }
  const zeros = new Uint8Array(Math.min(ZERO_CHUNK, length));
  for (let at = offset; at < offset + length; at += zeros.length) {
    const n = Math.min(zeros.length, offset + length - at);
    options.signal?.throwIfAborted();
    await writeTo(storage, at, n === zeros.length ? zeros : zeros.subarray(0, n));
  }
}

/**
 * Reads exactly `into.length` bytes or zero-fills what lies past the end. Returns bytes really read.
 * A short read that stops before the end of the file is an I/O error, not a hole: zero-filling
 * it would show (and a read-modify-write would store) zeros nobody wrote.
 */
export async function readZeroFilled(storage: Storage, offset: number, into: Uint8Array): Promise<number> {
  const n = await storage.read(offset, into);
  if (n < into.length) {
    await checkShortRead(storage, offset, n, into.length);
    into.fill(0, n);
  }
  return n;
}

/** Throws `io` (EIO) when a read of `wanted` bytes at `offset` returned `got` < wanted before the end of the file. */
export async function checkShortRead(storage: Storage, offset: number, got: number, wanted: number): Promise<void> {
  if (got >= wanted) return;
  const size = await storage.size();
  if (offset + got < size) {
    throw new BlockError(
      'io',
      `short read: ${got} of ${wanted} bytes at offset ${offset}, inside a file of ${size} bytes`,
      { path: storage.path, offset: offset + got, code: 'EIO' },
    );
  }
}
