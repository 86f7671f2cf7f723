/**
 * raw's `offset` and `size` options (QEMU's raw-format.c): the image is the bytes
 * [offset, offset + size) of the file, `size` defaulting to the rest of the file. A Vfs wrapper
 * opens the one named file as such a window (every other path, such as a backing file, as it is);
 * reads, writes, zeroing and extents are shifted by the offset, and nothing reaches past the
 * window's end: a read there comes back short (the end of the image), a write there is refused.
 * A window with a `size` cannot be resized (QEMU's "fixed-size raw disks"); one with only an offset
 * resizes the file to offset + size, as QEMU's raw_co_truncate does.
 */
import {
  BlockError,
  FilterStorage,
  ForwardingVfs,
  type Storage,
  type StorageExtent,
  type Vfs,
  type VfsOpenOptions,
} from '@blk/core';

export interface Window {
  offset: number;
  /** Bytes the image has; undefined: up to the end of the file, as it is when opened. */
  size?: number | undefined;
}

class WindowStorage extends FilterStorage {
  constructor(
    next: Storage,
    private readonly start: number,
    private length: number,
    /** The user gave `size`: the image cannot be resized. */
    private readonly fixed: boolean,
  ) {
    super(next);
  }

  /** The part of [offset, offset + n) inside the window. */
  private clamp(offset: number, n: number): number {
    return Math.max(0, Math.min(n, this.length - offset));
  }

  private outside(offset: number, n: number): BlockError | undefined {
    if (offset >= 0 && offset + n <= this.length) return undefined;
    return new BlockError(
      'invalid-argument',
      `request at ${offset} + ${n} runs past the window of ${this.length} bytes`,
      {
        path: this.path,
      },
    );
  }

  override read(offset: number, into: Uint8Array): Promise<number> {
    return this.next.read(this.start + offset, into.subarray(0, this.clamp(offset, into.length)));
  }
  override readSync(offset: number, into: Uint8Array): number {
    return this.next.readSync!(this.start + offset, into.subarray(0, this.clamp(offset, into.length)));
  }
  override readOnPool(offset: number, into: Uint8Array): Promise<number> {
    return this.next.readOnPool!(this.start + offset, into.subarray(0, this.clamp(offset, into.length)));
  }
  override async extentAt(offset: number, length: number): Promise<StorageExtent | undefined> {
    const n = this.clamp(offset, length);
    if (n === 0) return undefined;
    const e = await this.next.extentAt!(this.start + offset, n);
    return e === undefined ? undefined : { data: e.data, length: Math.min(e.length, n) };
  }
  override write(offset: number, data: Uint8Array): Promise<void> {
    const bad = this.outside(offset, data.length);
    return bad ? Promise.reject(bad) : super.write(this.start + offset, data);
  }
  override writeOnPool(offset: number, data: Uint8Array): Promise<void> {
    const bad = this.outside(offset, data.length);
    return bad ? Promise.reject(bad) : this.next.writeOnPool!(this.start + offset, data);
  }
  override zeroRange(offset: number, length: number, punch: boolean): Promise<boolean> {
    const bad = this.outside(offset, length);
    return bad ? Promise.reject(bad) : super.zeroRange(this.start + offset, length, punch);
  }
  override allocate(offset: number, length: number): Promise<void> {
    const bad = this.outside(offset, length);
    return bad ? Promise.reject(bad) : super.allocate(this.start + offset, length);
  }
  /** The window's size, less what the file has lost since it was opened (reads there come back short). */
  override async size(): Promise<number> {
    const fileSize = await this.next.size();
    return Math.max(0, Math.min(this.length, fileSize - this.start));
  }
  override async truncate(size: number): Promise<void> {
    if (this.fixed) {
      throw new BlockError('not-supported', 'Cannot resize fixed-size raw disks', { path: this.path, code: 'ENOTSUP' });
    }
    if (size === this.length) return;
    await super.truncate(this.start + size);
    this.length = size;
  }
}

/** Opens `path` (relative or absolute: the same file) as `window`, with QEMU's checks and messages against the file's size. */
export class WindowVfs extends ForwardingVfs {
  constructor(
    inner: Vfs,
    private readonly path: string,
    private readonly window: Window,
  ) {
    super(inner);
  }

  /** Whether `path` names the windowed file: the image layer opens it by its absolute name. */
  private isWindowed(path: string): boolean {
    const cwd = this.inner.cwd();
    return this.inner.resolve(cwd, path) === this.inner.resolve(cwd, this.path);
  }

  override async open(path: string, options?: VfsOpenOptions): Promise<Storage> {
    const storage = await super.open(path, options);
    if (!this.isWindowed(path)) return storage;
    try {
      const fileSize = await storage.size();
      const { offset, size } = this.window;
      if (offset > fileSize) {
        throw new BlockError(
          'invalid-argument',
          `Offset (${offset}) cannot be greater than size of the containing file (${fileSize})`,
          { path },
        );
      }
      if (size !== undefined && offset + size > fileSize) {
        // QEMU's text, its double space included.
        throw new BlockError(
          'invalid-argument',
          `The sum of offset (${offset}) and size (${size}) has to be smaller or equal to the  actual size of the containing file (${fileSize})`,
          { path },
        );
      }
      if (size !== undefined && size % 512 !== 0) {
        throw new BlockError('invalid-argument', 'Specified size is not multiple of 512', { path });
      }
      return new WindowStorage(storage, offset, size ?? fileSize - offset, size !== undefined);
    } catch (err) {
      await storage.close();
      throw err;
    }
  }
}
