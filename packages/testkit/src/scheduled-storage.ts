import { FilterStorage, ForwardingVfs, type Storage, type Vfs, type VfsOpenOptions } from '@blk/core/portable';
import type { Scheduler } from 'fast-check';

export interface ScheduledStorageOptions {
  /**
   * Also hold back each operation's completion after it took effect, so a
   * caller can learn of its write after a later operation already saw it
   * (default true). Each operation then costs two scheduler steps.
   */
  delayCompletion?: boolean;
}

/**
 * A storage whose every operation waits for a fast-check scheduler before it
 * takes effect (and, by default, again before its caller hears back), so that
 * operations issued together land in whatever order the scheduler picks: a
 * disk with a deep queue. This is what makes races in a driver real under
 * `fc.scheduler()`: with an in-memory storage alone, every operation would
 * finish in issue order.
 *
 * Written data is copied when the write is issued: a driver that reuses or
 * changes its buffer after `write()` returned a promise does not change what
 * lands (the strictest storage a driver can meet; a driver must not rely on
 * the opposite).
 */
export class ScheduledStorage extends FilterStorage {
  private readonly delayCompletion: boolean;

  constructor(
    inner: Storage,
    private readonly scheduler: Scheduler,
    options: ScheduledStorageOptions = {},
  ) {
    super(inner);
    this.delayCompletion = options.delayCompletion ?? true;
  }

  /** The storage whose operations are scheduled. */
  get inner(): Storage {
    return this.next;
  }

  override read(offset: number, into: Uint8Array): Promise<number> {
    return this.op(`read ${offset}+${into.length}`, () => super.read(offset, into));
  }

  override write(offset: number, data: Uint8Array): Promise<void> {
    const copy = data.slice();
    return this.op(`write ${offset}+${data.length}`, () => super.write(offset, copy));
  }

  override size(): Promise<number> {
    return this.op('size', () => super.size());
  }

  override truncate(size: number): Promise<void> {
    return this.op(`truncate ${size}`, () => super.truncate(size));
  }

  override flush(): Promise<void> {
    return this.op('flush', () => super.flush());
  }

  private async op<T>(what: string, run: () => Promise<T>): Promise<T> {
    const label = `${this.inner.path}: ${what}`;
    await this.scheduler.schedule(Promise.resolve(), label);
    const result = await run();
    if (this.delayCompletion) await this.scheduler.schedule(Promise.resolve(), `${label} (completion)`);
    return result;
  }
}

/** A `Vfs` whose storages are `ScheduledStorage`s over the wrapped one's; names and metadata pass straight through. */
export class ScheduledVfs extends ForwardingVfs {
  constructor(
    inner: Vfs,
    private readonly scheduler: Scheduler,
    private readonly options: ScheduledStorageOptions = {},
  ) {
    super(inner);
  }

  override async open(path: string, options?: VfsOpenOptions): Promise<Storage> {
    return new ScheduledStorage(await this.inner.open(path, options), this.scheduler, this.options);
  }
}
