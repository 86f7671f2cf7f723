/**
 * `File`/`Blob` storage (read-only): each read is `blob.slice(a, b)` read on
 * its own, so a picked file of any size is never loaded whole (v86's
 * AsyncFileBuffer model). In a worker, `FileReaderSync` makes reads
 * synchronous, so the core's synchronous read path applies there.
 */
import {
  BlockError,
  storageCapabilities,
  type FileStat,
  type Storage,
  type StorageCapabilities,
  type VfsOpenOptions,
} from '@blk/core/portable';
import { browserError } from './errors.js';
import { MountedVfs } from './mounted-vfs.js';

interface FileReaderSyncLike {
  readAsArrayBuffer(blob: Blob): ArrayBuffer;
}
type FileReaderSyncCtor = new () => FileReaderSyncLike;

function fileReaderSync(): FileReaderSyncCtor | undefined {
  return (globalThis as { FileReaderSync?: FileReaderSyncCtor }).FileReaderSync;
}

/** Options of `BlobStorage`. */
export interface BlobStorageOptions {
  /** Use `FileReaderSync` for `readSync` where it exists (workers; default true). */
  syncReads?: boolean;
}

export class BlobStorage implements Storage {
  readonly readOnly = true;
  readonly capabilities: StorageCapabilities;
  private closed = false;
  private readonly reader: FileReaderSyncLike | undefined;

  constructor(
    private readonly blob: Blob,
    readonly path: string = blob instanceof File ? blob.name : 'blob',
    options: BlobStorageOptions = {},
  ) {
    const Sync = options.syncReads === false ? undefined : fileReaderSync();
    this.reader = Sync ? new Sync() : undefined;
    this.capabilities = storageCapabilities({
      syncRead: this.reader !== undefined,
      limits: { requestAlignment: 1, preferredTransfer: 64 * 1024 },
    });
  }

  private range(offset: number, into: Uint8Array): number {
    if (this.closed) throw new BlockError('closed', 'read after close', { path: this.path, code: 'EBADF' });
    if (!Number.isSafeInteger(offset) || offset < 0) {
      throw new BlockError('out-of-range', `read at ${offset}`, { path: this.path, offset });
    }
    return Math.max(0, Math.min(into.length, this.blob.size - offset));
  }

  async read(offset: number, into: Uint8Array): Promise<number> {
    const n = this.range(offset, into);
    if (n === 0) return 0;
    let buf: ArrayBuffer;
    try {
      buf = await this.blob.slice(offset, offset + n).arrayBuffer();
    } catch (err) {
      throw browserError(err, this.path, `read at ${offset}`);
    }
    if (buf.byteLength !== n) {
      throw new BlockError('io', `short read: ${buf.byteLength} of ${n} bytes at ${offset}`, {
        path: this.path,
        offset,
        code: 'EIO',
      });
    }
    into.set(new Uint8Array(buf));
    return n;
  }

  readSync(offset: number, into: Uint8Array): number {
    if (this.reader === undefined) {
      throw new BlockError('not-supported', 'synchronous reads of a Blob need a worker (FileReaderSync)', {
        path: this.path,
      });
    }
    const n = this.range(offset, into);
    if (n === 0) return 0;
    let buf: ArrayBuffer;
    try {
      buf = this.reader.readAsArrayBuffer(this.blob.slice(offset, offset + n));
    } catch (err) {
      throw browserError(err, this.path, `read at ${offset}`);
    }
    into.set(new Uint8Array(buf, 0, Math.min(n, buf.byteLength)));
    return Math.min(n, buf.byteLength);
  }

  async size(): Promise<number> {
    return this.blob.size;
  }

  async close(): Promise<void> {
    this.closed = true;
  }
}

/**
 * A read-only name space of Blobs and Files under a mount point (default
 * `/files`): `put('/files/base.img', file)` makes a picked file openable by
 * name, and an image among them can name another as its backing file
 * (resolved against its own directory). Names outside the mount are refused.
 */
export class BlobVfs extends MountedVfs {
  private readonly blobs = new Map<string, Blob>();

  constructor(options: { mount?: string } = {}) {
    super(options.mount ?? '/files');
  }

  private abs(path: string): string {
    return this.underMount(path, `not under ${this.mount}`);
  }

  /** Makes `blob` the file at `path` (under the mount; a bare name goes in the mount). Returns the path. */
  put(path: string, blob: Blob): string {
    const abs = this.abs(path);
    this.blobs.set(abs, blob);
    return abs;
  }

  /** Forgets the file at `path`. */
  delete(path: string): boolean {
    return this.blobs.delete(this.abs(path));
  }

  get(path: string): Blob | undefined {
    return this.blobs.get(this.abs(path));
  }

  private missing(path: string): BlockError {
    return new BlockError('io', 'no such file (pick it first)', { path, code: 'ENOENT' });
  }

  async open(path: string, options: VfsOpenOptions = {}): Promise<Storage> {
    if (options.create || options.truncate || options.readOnly === false) {
      throw new BlockError('read-only', 'picked files are read-only', { path, code: 'EROFS' });
    }
    const blob = this.blobs.get(this.abs(path));
    if (blob === undefined) throw this.missing(path);
    return new BlobStorage(blob, this.abs(path));
  }

  async stat(path: string): Promise<FileStat> {
    const abs = this.abs(path);
    const blob = this.blobs.get(abs);
    if (blob === undefined) {
      const prefix = `${abs}/`;
      if (abs === this.mount || [...this.blobs.keys()].some((k) => k.startsWith(prefix))) {
        return { size: 0, mtimeSec: 0, isFile: false, isDirectory: true, isSymbolicLink: false, type: 'directory' };
      }
      throw this.missing(path);
    }
    const mtime = blob instanceof File ? Math.floor(blob.lastModified / 1000) : 0;
    return { size: blob.size, mtimeSec: mtime, isFile: true, isDirectory: false, isSymbolicLink: false, type: 'file' };
  }

  async realpath(path: string): Promise<string> {
    await this.stat(path);
    return this.abs(path);
  }

  async remove(path: string): Promise<void> {
    if (!this.blobs.delete(this.abs(path))) throw this.missing(path);
  }

  async rename(from: string, to: string): Promise<void> {
    const blob = this.blobs.get(this.abs(from));
    if (blob === undefined) throw this.missing(from);
    this.blobs.delete(this.abs(from));
    this.blobs.set(this.abs(to), blob);
  }
}
