import { FilterStorage, ForwardingVfs, type Storage, type Vfs, type VfsOpenOptions } from '@blk/core';

export type StorageCall = 'read' | 'write' | 'flush' | 'truncate' | 'size' | 'close';

export interface StorageHooks {
  /** Awaited before every storage call (e.g. `() => scheduler.schedule(Promise.resolve())`). */
  before?: (
    call: StorageCall,
    path: string,
    offset: number | undefined,
    length: number | undefined,
  ) => Promise<void> | void;
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
  constructor(
    inner: Vfs,
    readonly hooks: StorageHooks,
  ) {
    super(inner);
  }

  override async open(path: string, options?: VfsOpenOptions): Promise<Storage> {
    return new HookedStorage(this, await this.inner.open(path, options));
  }
}

class HookedStorage extends FilterStorage {
  constructor(
    private readonly vfs: HookedVfs,
    inner: Storage,
  ) {
    super(inner);
  }

  private async around<T>(
    call: StorageCall,
    offset: number | undefined,
    length: number | undefined,
    fn: () => Promise<T>,
  ): Promise<T> {
    if (!this.vfs.enabled) return fn();
    await this.vfs.hooks.before?.(call, this.path, offset, length);
    const result = await fn();
    this.vfs.hooks.after?.(call, this.path, offset, length);
    return result;
  }

  override read(offset: number, into: Uint8Array): Promise<number> {
    return this.around('read', offset, into.length, () => super.read(offset, into));
  }

  override write(offset: number, data: Uint8Array): Promise<void> {
    return this.around('write', offset, data.length, () => super.write(offset, data));
  }

  override size(): Promise<number> {
    return this.around('size', undefined, undefined, () => super.size());
  }
  override truncate(size: number): Promise<void> {
    return this.around('truncate', size, undefined, () => super.truncate(size));
  }
  override flush(): Promise<void> {
    return this.around('flush', undefined, undefined, () => super.flush());
  }
  override close(): Promise<void> {
    return this.around('close', undefined, undefined, () => super.close());
  }
}
