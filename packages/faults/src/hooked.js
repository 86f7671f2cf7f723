import { ForwardingVfs } from '@blk/core';
/**
 * A Vfs whose storages call hooks around every call: to let fast-check's
 * scheduler interleave I/O, to hold a call until another one starts, or to
 * trace the order in which a driver touches its file.
 */
export class HookedVfs extends ForwardingVfs {
    hooks;
    /** When false, hooks are skipped (e.g. while opening). */
    enabled = true;
    constructor(inner, hooks) {
        super(inner);
        this.hooks = hooks;
    }
    async open(path, options) {
        return new HookedStorage(this, await this.inner.open(path, options));
    }
}
class HookedStorage {
    vfs;
    inner;
    constructor(vfs, inner) {
        this.vfs = vfs;
        this.inner = inner;
    }
    get path() { return this.inner.path; }
    get readOnly() { return this.inner.readOnly; }
    async around(call, offset, length, fn) {
        if (!this.vfs.enabled)
            return fn();
        await this.vfs.hooks.before?.(call, this.path, offset, length);
        const result = await fn();
        this.vfs.hooks.after?.(call, this.path, offset, length);
        return result;
    }
    read(offset, into) {
        return this.around('read', offset, into.length, () => this.inner.read(offset, into));
    }
    write(offset, data) {
        return this.around('write', offset, data.length, () => this.inner.write(offset, data));
    }
    size() { return this.around('size', undefined, undefined, () => this.inner.size()); }
    truncate(size) { return this.around('truncate', size, undefined, () => this.inner.truncate(size)); }
    flush() { return this.around('flush', undefined, undefined, () => this.inner.flush()); }
    close() { return this.around('close', undefined, undefined, () => this.inner.close()); }
}
