/**
 * The origin private file system (OPFS) as blk storage. `OpfsStorage` runs
 * over a `FileSystemSyncAccessHandle`, which browsers offer only in dedicated
 * workers: its read, write, truncate, getSize and flush are synchronous, so
 * `readSync` is real and the core's synchronous read path applies. Every open
 * also takes a Web Lock on the file's path (exclusive to write, shared to
 * read), so a second tab or worker is refused with `locked` before it touches
 * the file, and readers share (`mode: 'read-only'` handles, Chromium 121+).
 */
import {
  BlockError,
  storageCapabilities,
  type FileStat,
  type Storage,
  type StorageCapabilities,
  type VfsOpenOptions,
} from '@blk/core/portable';
import { browserError, domName } from './errors.js';
import { acquireLock, type HeldLock } from './lock.js';
import { MountedVfs } from './mounted-vfs.js';

/** The synchronous access handle (DOM `FileSystemSyncAccessHandle`, worker-only). */
export interface SyncAccessHandle {
  read(buffer: Uint8Array, options?: { at?: number }): number;
  write(buffer: Uint8Array, options?: { at?: number }): number;
  truncate(size: number): void;
  getSize(): number;
  flush(): void;
  close(): void;
}

type SyncHandleFactory = (options?: { mode?: 'read-only' | 'readwrite' }) => Promise<SyncAccessHandle>;

/** Is a synchronous access handle available here (a dedicated worker with OPFS)? */
export function opfsSyncAvailable(): boolean {
  const g = globalThis as {
    FileSystemSyncAccessHandle?: unknown;
    navigator?: { storage?: { getDirectory?: unknown } };
  };
  return typeof g.FileSystemSyncAccessHandle === 'function' && typeof g.navigator?.storage?.getDirectory === 'function';
}

/** Options of `OpfsStorage.open`. */
export interface OpfsStorageOptions {
  readOnly?: boolean;
  /** Take the Web Lock of `path` (default true). */
  lock?: boolean;
  /** Truncate to 0 once opened and locked (a writable open only). */
  truncate?: boolean;
}

export class OpfsStorage implements Storage {
  readonly capabilities: StorageCapabilities;
  private closed = false;

  private constructor(
    private readonly handle: SyncAccessHandle,
    readonly path: string,
    readonly readOnly: boolean,
    private readonly lock: HeldLock | undefined,
  ) {
    this.capabilities = storageCapabilities({
      write: !readOnly,
      flush: !readOnly,
      syncRead: true,
      limits: { requestAlignment: 1, preferredTransfer: 4096 },
    });
  }

  /**
   * Opens `file` (a `FileSystemFileHandle` of OPFS) with a synchronous access
   * handle; `path` names it in messages and locks. `locked` when another tab
   * or worker holds it (its Web Lock, or the browser's own handle lock);
   * `not-supported` outside a dedicated worker.
   */
  static async open(file: FileSystemFileHandle, path: string, options: OpfsStorageOptions = {}): Promise<OpfsStorage> {
    const readOnly = options.readOnly ?? false;
    const create = (file as unknown as { createSyncAccessHandle?: SyncHandleFactory }).createSyncAccessHandle;
    if (typeof create !== 'function') {
      throw new BlockError(
        'not-supported',
        'OPFS synchronous access handles exist only in dedicated workers: open images in a Worker',
        { path },
      );
    }
    const lock = options.lock === false ? undefined : await acquireLock(path, readOnly ? 'shared' : 'exclusive');
    let handle: SyncAccessHandle;
    try {
      handle = await create.call(file, { mode: readOnly ? 'read-only' : 'readwrite' });
    } catch (err) {
      lock?.release();
      throw browserError(err, path, readOnly ? 'cannot open for reading' : 'cannot open for writing');
    }
    if (options.truncate && !readOnly) {
      try {
        handle.truncate(0);
      } catch (err) {
        handle.close();
        lock?.release();
        throw browserError(err, path, 'truncate');
      }
    }
    return new OpfsStorage(handle, path, readOnly, lock);
  }

  private live(what: string): SyncAccessHandle {
    if (this.closed) throw new BlockError('closed', `${what} after close`, { path: this.path, code: 'EBADF' });
    return this.handle;
  }

  private writable(what: string): SyncAccessHandle {
    if (this.readOnly) {
      throw new BlockError('read-only', `${what}: opened read-only`, { path: this.path, code: 'EROFS' });
    }
    return this.live(what);
  }

  private checkOffset(offset: number, length: number): void {
    if (!Number.isSafeInteger(offset) || offset < 0 || !Number.isSafeInteger(offset + length)) {
      throw new BlockError('out-of-range', `offset ${offset} (+${length})`, { path: this.path, offset });
    }
  }

  readSync(offset: number, into: Uint8Array): number {
    const handle = this.live('read');
    this.checkOffset(offset, into.length);
    try {
      return handle.read(into, { at: offset });
    } catch (err) {
      throw browserError(err, this.path, `read at ${offset}`);
    }
  }

  read(offset: number, into: Uint8Array): Promise<number> {
    try {
      return Promise.resolve(this.readSync(offset, into));
    } catch (err) {
      return Promise.reject(err);
    }
  }

  /** Synchronous `write` (the whole of `data`, or a BlockError). */
  writeSync(offset: number, data: Uint8Array): void {
    const handle = this.writable(`write at ${offset}`);
    this.checkOffset(offset, data.length);
    let n: number;
    try {
      n = handle.write(data, { at: offset });
    } catch (err) {
      throw browserError(err, this.path, `write at ${offset}`);
    }
    if (n !== data.length) {
      throw new BlockError('io', `short write: ${n} of ${data.length} bytes at ${offset}`, {
        path: this.path,
        offset,
        code: 'ENOSPC',
      });
    }
  }

  write(offset: number, data: Uint8Array): Promise<void> {
    try {
      this.writeSync(offset, data);
      return Promise.resolve();
    } catch (err) {
      return Promise.reject(err);
    }
  }

  async truncate(size: number): Promise<void> {
    const handle = this.writable(`truncate to ${size}`);
    this.checkOffset(size, 0);
    try {
      handle.truncate(size);
    } catch (err) {
      throw browserError(err, this.path, `truncate to ${size}`);
    }
  }

  /** Synchronous length. */
  sizeSync(): number {
    try {
      return this.live('size').getSize();
    } catch (err) {
      throw browserError(err, this.path, 'size');
    }
  }

  async size(): Promise<number> {
    return this.sizeSync();
  }

  async flush(): Promise<void> {
    if (this.readOnly) return;
    try {
      this.live('flush').flush();
    } catch (err) {
      throw browserError(err, this.path, 'flush');
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    try {
      this.handle.close();
    } finally {
      this.lock?.release();
    }
  }
}

/** Options of `OpfsVfs`. */
export interface OpfsVfsOptions {
  /** Where OPFS appears in blk's paths (default `/opfs`: `/opfs/a/b.cow` is the file b.cow in directory a). */
  mount?: string;
  /** The directory to serve (default the origin's OPFS root, `navigator.storage.getDirectory()`). */
  root?: FileSystemDirectoryHandle;
  /** Take Web Locks on opens (default true). */
  locks?: boolean;
}

/**
 * OPFS as a blk `Vfs` (in a dedicated worker for `open`; `stat`, `exists`,
 * `remove` work anywhere). Directories are created on demand by a creating
 * open. Paths outside the mount are `io` ENOENT.
 */
export class OpfsVfs extends MountedVfs {
  private rootHandle: Promise<FileSystemDirectoryHandle> | undefined;
  /** Storages open through this Vfs, by path: `stat` asks their handle for the size (it is exact while writing). */
  private readonly open_ = new Map<string, Set<OpfsStorage>>();

  constructor(private readonly options: OpfsVfsOptions = {}) {
    super(options.mount ?? '/opfs');
    if (options.root) this.rootHandle = Promise.resolve(options.root);
  }

  private root(): Promise<FileSystemDirectoryHandle> {
    if (this.rootHandle === undefined) {
      const storage = (globalThis as { navigator?: { storage?: StorageManager } }).navigator?.storage;
      if (typeof storage?.getDirectory !== 'function') {
        return Promise.reject(
          new BlockError('not-supported', 'this browser context has no origin private file system', {
            path: this.mount,
          }),
        );
      }
      this.rootHandle = storage.getDirectory();
    }
    return this.rootHandle;
  }

  /** `path` as an absolute path and its components below the mount. */
  parts(path: string): { abs: string; names: string[] } {
    const abs = this.underMount(path, `not an OPFS path (they start with ${this.mount}/)`);
    const names = abs
      .slice(this.mount.length)
      .split('/')
      .filter((n) => n !== '');
    return { abs, names };
  }

  private async dir(names: string[], path: string, create: boolean): Promise<FileSystemDirectoryHandle> {
    let dir = await this.root();
    for (const name of names) {
      try {
        dir = await dir.getDirectoryHandle(name, { create });
      } catch (err) {
        throw browserError(err, path, 'open directory');
      }
    }
    return dir;
  }

  private async entry(
    path: string,
  ): Promise<{ abs: string; kind: 'file'; handle: FileSystemFileHandle } | { abs: string; kind: 'directory' }> {
    const { abs, names } = this.parts(path);
    if (names.length === 0) return { abs, kind: 'directory' };
    const parent = await this.dir(names.slice(0, -1), path, false);
    const name = names[names.length - 1]!;
    try {
      return { abs, kind: 'file', handle: await parent.getFileHandle(name) };
    } catch (err) {
      if (domName(err) !== 'TypeMismatchError') throw browserError(err, path, 'stat');
    }
    await parent.getDirectoryHandle(name);
    return { abs, kind: 'directory' };
  }

  async open(path: string, options: VfsOpenOptions = {}): Promise<Storage> {
    const { abs, names } = this.parts(path);
    if (names.length === 0) throw new BlockError('special-file', 'a directory', { path, code: 'EISDIR' });
    const parent = await this.dir(names.slice(0, -1), path, options.create ?? false);
    const name = names[names.length - 1]!;
    let file: FileSystemFileHandle;
    if (options.create && options.exclusive) {
      let exists = true;
      try {
        await parent.getFileHandle(name);
      } catch {
        exists = false;
      }
      if (exists) throw new BlockError('exists', 'file exists', { path, code: 'EEXIST' });
    }
    try {
      file = await parent.getFileHandle(name, { create: options.create ?? false });
    } catch (err) {
      throw browserError(err, path, 'open');
    }
    const storage = await OpfsStorage.open(file, abs, {
      readOnly: options.readOnly ?? false,
      lock: this.options.locks ?? true,
      truncate: (options.create && options.truncate) ?? false,
    });
    let set = this.open_.get(abs);
    if (set === undefined) this.open_.set(abs, (set = new Set()));
    set.add(storage);
    const close = storage.close.bind(storage);
    storage.close = async () => {
      set!.delete(storage);
      if (set!.size === 0) this.open_.delete(abs);
      await close();
    };
    return storage;
  }

  async stat(path: string): Promise<FileStat> {
    const e = await this.entry(path);
    if (e.kind === 'directory') {
      return { size: 0, mtimeSec: 0, isFile: false, isDirectory: true, isSymbolicLink: false, type: 'directory' };
    }
    const live = this.open_.get(e.abs)?.values().next().value as OpfsStorage | undefined;
    let size: number;
    let mtimeSec: number;
    try {
      const file = await e.handle.getFile();
      size = live ? live.sizeSync() : file.size;
      mtimeSec = Math.floor(file.lastModified / 1000);
    } catch (err) {
      if (live === undefined) throw browserError(err, path, 'stat');
      // A file under a sync handle may refuse getFile: its size from the handle, no time.
      size = live.sizeSync();
      mtimeSec = 0;
    }
    return { size, mtimeSec, isFile: true, isDirectory: false, isSymbolicLink: false, type: 'file' };
  }

  async realpath(path: string): Promise<string> {
    return (await this.entry(path)).abs;
  }

  /** `exists` needs only the entry, not the file's size and time. */
  protected override lookup(path: string): Promise<unknown> {
    return this.entry(path);
  }

  async remove(path: string): Promise<void> {
    const { names } = this.parts(path);
    if (names.length === 0) throw new BlockError('invalid-argument', 'cannot remove the OPFS root', { path });
    const parent = await this.dir(names.slice(0, -1), path, false);
    try {
      await parent.removeEntry(names[names.length - 1]!);
    } catch (err) {
      throw browserError(err, path, 'remove');
    }
  }

  async rename(from: string, to: string): Promise<void> {
    const src = await this.entry(from);
    if (src.kind !== 'file') throw new BlockError('special-file', 'only files are renamed', { path: from });
    const { names } = this.parts(to);
    const target = await this.dir(names.slice(0, -1), to, true);
    const move = (src.handle as unknown as { move?: (dir: FileSystemDirectoryHandle, name: string) => Promise<void> })
      .move;
    if (typeof move !== 'function') {
      throw new BlockError('not-supported', 'this browser cannot rename OPFS files (FileSystemHandle.move)', {
        path: from,
      });
    }
    try {
      await move.call(src.handle, target, names[names.length - 1]!);
    } catch (err) {
      throw browserError(err, from, `rename to ${to}`);
    }
  }
}
