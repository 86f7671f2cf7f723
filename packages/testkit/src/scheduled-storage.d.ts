import { ForwardingVfs, type Storage, type Vfs, type VfsOpenOptions } from '@blk/core/portable';
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
export declare class ScheduledStorage implements Storage {
    readonly inner: Storage;
    private readonly scheduler;
    private readonly delayCompletion;
    constructor(inner: Storage, scheduler: Scheduler, options?: ScheduledStorageOptions);
    get path(): string;
    get readOnly(): boolean;
    read(offset: number, into: Uint8Array): Promise<number>;
    write(offset: number, data: Uint8Array): Promise<void>;
    size(): Promise<number>;
    truncate(size: number): Promise<void>;
    flush(): Promise<void>;
    close(): Promise<void>;
    private op;
}
/** A `Vfs` whose storages are `ScheduledStorage`s over the wrapped one's; names and metadata pass straight through. */
export declare class ScheduledVfs extends ForwardingVfs {
    private readonly scheduler;
    private readonly options;
    constructor(inner: Vfs, scheduler: Scheduler, options?: ScheduledStorageOptions);
    open(path: string, options?: VfsOpenOptions): Promise<Storage>;
}
