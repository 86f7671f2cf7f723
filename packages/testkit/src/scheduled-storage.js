import { ForwardingVfs } from '@blk/core/portable';
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
export class ScheduledStorage {
    inner;
    scheduler;
    delayCompletion;
    constructor(inner, scheduler, options = {}) {
        this.inner = inner;
        this.scheduler = scheduler;
        this.delayCompletion = options.delayCompletion ?? true;
    }
    get path() {
        return this.inner.path;
    }
    get readOnly() {
        return this.inner.readOnly;
    }
    read(offset, into) {
        return this.op(`read ${offset}+${into.length}`, () => this.inner.read(offset, into));
    }
    write(offset, data) {
        const copy = data.slice();
        return this.op(`write ${offset}+${data.length}`, () => this.inner.write(offset, copy));
    }
    size() {
        return this.op('size', () => this.inner.size());
    }
    truncate(size) {
        return this.op(`truncate ${size}`, () => this.inner.truncate(size));
    }
    flush() {
        return this.op('flush', () => this.inner.flush());
    }
    close() {
        return this.inner.close();
    }
    async op(what, run) {
        const label = `${this.inner.path}: ${what}`;
        await this.scheduler.schedule(Promise.resolve(), label);
        const result = await run();
        if (this.delayCompletion)
            await this.scheduler.schedule(Promise.resolve(), `${label} (completion)`);
        return result;
    }
}
/** A `Vfs` whose storages are `ScheduledStorage`s over the wrapped one's; names and metadata pass straight through. */
export class ScheduledVfs extends ForwardingVfs {
    scheduler;
    options;
    constructor(inner, scheduler, options = {}) {
        super(inner);
        this.scheduler = scheduler;
        this.options = options;
    }
    async open(path, options) {
        return new ScheduledStorage(await this.inner.open(path, options), this.scheduler, this.options);
    }
}
