import { BlockError } from '../errors.js';
import {
  flushStorage,
  storageCapabilities,
  truncateTo,
  writeTo,
  type Storage,
  type StorageCapabilities,
  type StorageExtent,
} from './storage.js';

/**
 * A storage that passes every call to the storage below it (nbdkit's filter
 * `next`). Wrappers (locks, fault injection, crash simulation, scheduling,
 * thread-pool routing, caches) extend it and override only what they change,
 * so a member that `Storage` gains later is forwarded by every one of them
 * instead of being silently hidden.
 *
 * Every member is present, optional ones too; `capabilities` says which work.
 * It is derived from `next`'s, once (on first use, when the subclass is
 * constructed), by a rule that keeps a filter honest:
 * - a filter that overrides `read` but not `readSync` loses `syncRead` (the
 *   synchronous path would skip what its `read` adds), and likewise `extents`
 *   unless it overrides `extentAt` (a filter that changes what reads return
 *   must not report the next storage's holes);
 * - a filter that overrides `write` but not `zeroRange` (or `allocate`) loses
 *   that capability: it changes content without passing through `write`;
 * - a filter that overrides `read`, `write` or `flush` but not its thread-pool
 *   counterpart (`readOnPool`, `writeOnPool`, `flushOnPool`) loses `pool`:
 *   requests sent to the pool would skip what the filter does.
 * A filter that knows better overrides `filterCapabilities`.
 */
export class FilterStorage implements Storage {
  private caps: StorageCapabilities | undefined;

  constructor(protected readonly next: Storage) {}

  get path(): string {
    return this.next.path;
  }
  get readOnly(): boolean {
    return this.next.readOnly;
  }

  /** next's capabilities as this filter changes them (see the class comment); computed once. */
  get capabilities(): StorageCapabilities {
    return (this.caps ??= this.filterCapabilities(this.next.capabilities));
  }

  /**
   * The capabilities of this filter over a storage with `below`. The default
   * applies the rule of the class comment; override to narrow further (or to
   * keep a capability the rule would drop, when the filter does not change
   * what it concerns: call super and spread).
   */
  protected filterCapabilities(below: StorageCapabilities): StorageCapabilities {
    const base = FilterStorage.prototype;
    const readKept = this.read === base.read;
    const writeKept = this.write === base.write;
    const poolKept =
      (readKept || this.readOnPool !== base.readOnPool)
      && (writeKept || this.writeOnPool !== base.writeOnPool)
      && (this.flush === base.flush || this.flushOnPool !== base.flushOnPool);
    return storageCapabilities({
      ...below,
      syncRead: below.syncRead && (readKept || this.readSync !== base.readSync),
      extents: below.extents && (readKept || this.extentAt !== base.extentAt),
      allocate: below.allocate && (writeKept || this.allocate !== base.allocate),
      zeroRange: below.zeroRange && (writeKept || this.zeroRange !== base.zeroRange),
      pool: below.pool && poolKept,
    });
  }

  read(offset: number, into: Uint8Array): Promise<number> {
    return this.next.read(offset, into);
  }

  /**
   * next's descriptor only while this filter changes neither what is read nor what is written
   * (a file read past the filter would skip it: faults, crash simulation, caches).
   */
  hostFd(): number | undefined {
    const base = FilterStorage.prototype;
    const plain =
      this.read === base.read
      && this.readSync === base.readSync
      && this.readOnPool === base.readOnPool
      && this.write === base.write
      && this.writeOnPool === base.writeOnPool
      && this.zeroRange === base.zeroRange;
    return plain ? this.next.hostFd?.() : undefined;
  }

  readSync(offset: number, into: Uint8Array): number {
    if (this.next.readSync === undefined) throw this.missing('readSync');
    return this.next.readSync(offset, into);
  }

  extentAt(offset: number, length: number): Promise<StorageExtent | undefined> {
    if (this.next.extentAt === undefined) return Promise.reject(this.missing('extentAt'));
    return this.next.extentAt(offset, length);
  }

  allocate(offset: number, length: number): Promise<void> {
    if (this.next.allocate === undefined) return Promise.reject(this.missing('allocate'));
    return this.next.allocate(offset, length);
  }

  zeroRange(offset: number, length: number, punch: boolean): Promise<boolean> {
    if (this.next.zeroRange === undefined) return Promise.resolve(false);
    return this.next.zeroRange(offset, length, punch);
  }

  write(offset: number, data: Uint8Array): Promise<void> {
    return writeTo(this.next, offset, data);
  }
  size(): Promise<number> {
    return this.next.size();
  }
  truncate(size: number): Promise<void> {
    return truncateTo(this.next, size);
  }
  flush(): Promise<void> {
    return flushStorage(this.next);
  }
  readOnPool(offset: number, into: Uint8Array): Promise<number> {
    if (this.next.readOnPool === undefined) return Promise.reject(this.missing('readOnPool'));
    return this.next.readOnPool(offset, into);
  }
  writeOnPool(offset: number, data: Uint8Array): Promise<void> {
    if (this.next.writeOnPool === undefined) return Promise.reject(this.missing('writeOnPool'));
    return this.next.writeOnPool(offset, data);
  }
  flushOnPool(): Promise<void> {
    if (this.next.flushOnPool === undefined) return Promise.reject(this.missing('flushOnPool'));
    return this.next.flushOnPool();
  }
  close(): Promise<void> {
    return this.next.close();
  }

  private missing(member: string): BlockError {
    return new BlockError('not-supported', `the storage has no ${member}`, { path: this.path });
  }
}
