import { ForwardingVfs, type Storage, type Vfs, type VfsOpenOptions } from '@blk/core';

export type StorageCall = 'read' | 'write' | 'flush' | 'truncate' | 'size' | 'close';

export interface StorageHooks {
  /** Awaited before every storage call (e.g. `() => scheduler.schedule(Promise.resolve())`). */
  before?: (call: StorageCall, path: string, offset: number | undefined, length: number | undefined) => Promise<void> | void;
  /** Called after every storage call that succeeded. */
  after?: (call: StorageCall, path: string, offset: number | undefined, length: number | undefined) => void;
}

/**
 * A Vfs whose storages call hooks around every call: to let fast-check's
 * scheduler interleave I/O, to hold a call until another one starts, or to
 * trace the order in which a driver touches its file.
 */
export class HookedVfs extends ForwardingVfs {
  /** When false, hooks are skipped (e.g. while opening). */
  enabled = true;
  constructor(inner: Vfs, readonly hooks: StorageHooks) {
    super(inner);
  }

  override async open(path: string, options?: VfsOpenOptions): Promise<Storage> {
    return new HookedStorage(this, await this.inner.open(path, options));
  }

}

class HookedStorage implements Storage {
  constructor(private readonly vfs: HookedVfs, private readonly inner: Storage) {}

  get path(): string { return this.inner.path; }
  get readOnly(): boolean { return this.inner.readOnly; }

  private async around<T>(call: StorageCall, offset: number | undefined, length: number | undefined, fn: () => Promise<T>): Promise<T> {
    if (!this.vfs.enabled) return fn();
    await this.vfs.hooks.before?.(call, this.path, offset, length);
    const result = await fn();
    this.vfs.hooks.after?.(call, this.path, offset, length);
    return result;
  }

  read(offset: number, into: Uint8Array): Promise<number> {
    return this.around('read', offset, into.length, () => this.inner.read(offset, into));
  }

  write(offset: number, data: Uint8Array): Promise<void> {
    return this.around('write', offset, data.length, () => this.inner.write(offset, data));
  }

  size(): Promise<number> { return this.around('size', undefined, undefined, () => this.inner.size()); }
  truncate(size: number): Promise<void> { return this.around('truncate', size, undefined, () => this.inner.truncate(size)); }
  flush(): Promise<void> { return this.around('flush', undefined, undefined, () => this.inner.flush()); }
  close(): Promise<void> { return this.around('close', undefined, undefined, () => this.inner.close()); }
}
