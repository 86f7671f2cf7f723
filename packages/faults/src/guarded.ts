import { FilterStorage, ForwardingVfs, type Storage, type Vfs, type VfsOpenOptions } from '@blk/core';

/** Thrown (and recorded) when a driver breaks a `GuardedStorage` rule. Deliberately not a BlockError. */
export class GuardViolation extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'GuardViolation';
  }
}

export interface GuardOptions {
  /** Largest single read or write allowed (default 16 MiB). */
  maxTransfer?: number;
  /**
   * Refuse reads that start at or past the end of the file (default true):
   * a driver that validated its header never needs them.
   */
  forbidReadPastEnd?: boolean;
  /** Refuse every write (default true: probe and open of a read-only image must not write). */
  forbidWrites?: boolean;
}

export interface GuardStats {
  reads: number;
  bytesRead: number;
  largestRead: number;
  violations: string[];
}

/**
 * A storage wrapper for fuzzing: checks that every access stays inside the
 * file and below a size bound, and counts what was read.
 */
export class GuardedStorage extends FilterStorage {
  constructor(
    inner: Storage,
    private readonly options: GuardOptions = {},
    readonly stats: GuardStats = { reads: 0, bytesRead: 0, largestRead: 0, violations: [] },
  ) {
    super(inner);
  }

  /** The guarded storage. */
  get inner(): Storage {
    return this.next;
  }

  override async read(offset: number, into: Uint8Array): Promise<number> {
    const max = this.options.maxTransfer ?? 16 * 1024 * 1024;
    if (into.length > max) this.violate(`read of ${into.length} bytes at ${offset} exceeds ${max}`);
    if (!Number.isSafeInteger(offset) || offset < 0) this.violate(`read at bad offset ${offset}`);
    if ((this.options.forbidReadPastEnd ?? true) && into.length > 0) {
      const size = await this.inner.size();
      if (offset >= size)
        this.violate(`read of ${into.length} bytes at ${offset}, at or past the end of the file (${size})`);
    }
    this.stats.reads++;
    const n = await this.inner.read(offset, into);
    this.stats.bytesRead += n;
    this.stats.largestRead = Math.max(this.stats.largestRead, into.length);
    return n;
  }

  override async write(offset: number, data: Uint8Array): Promise<void> {
    if (this.options.forbidWrites ?? true) this.violate(`write of ${data.length} bytes at ${offset}`);
    return super.write(offset, data);
  }

  override async truncate(size: number): Promise<void> {
    if (this.options.forbidWrites ?? true) this.violate(`truncate to ${size}`);
    return super.truncate(size);
  }

  private violate(message: string): never {
    const text = `${this.path}: ${message}`;
    this.stats.violations.push(text);
    throw new GuardViolation(text);
  }
}

/** A Vfs whose storages are all `GuardedStorage`s sharing one stats record. */
export class GuardedVfs extends ForwardingVfs {
  readonly stats: GuardStats = { reads: 0, bytesRead: 0, largestRead: 0, violations: [] };
  constructor(
    inner: Vfs,
    private readonly options: GuardOptions = {},
  ) {
    super(inner);
  }

  override async open(path: string, options?: VfsOpenOptions): Promise<Storage> {
    return new GuardedStorage(await this.inner.open(path, options), this.options, this.stats);
  }
}
