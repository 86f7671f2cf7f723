import { ForwardingVfs } from '@blk/core';
/** Thrown (and recorded) when a driver breaks a `GuardedStorage` rule. Deliberately not a BlockError. */
export class GuardViolation extends Error {
    constructor(message) {
        super(message);
        this.name = 'GuardViolation';
    }
}
/**
 * A storage wrapper for fuzzing: checks that every access stays inside the
 * file and below a size bound, and counts what was read.
 */
export class GuardedStorage {
    inner;
    options;
    stats;
    constructor(inner, options = {}, stats = { reads: 0, bytesRead: 0, largestRead: 0, violations: [] }) {
        this.inner = inner;
        this.options = options;
        this.stats = stats;
    }
    get path() { return this.inner.path; }
    get readOnly() { return this.inner.readOnly; }
    async read(offset, into) {
        const max = this.options.maxTransfer ?? 16 * 1024 * 1024;
        if (into.length > max)
            this.violate(`read of ${into.length} bytes at ${offset} exceeds ${max}`);
        if (!Number.isSafeInteger(offset) || offset < 0)
            this.violate(`read at bad offset ${offset}`);
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
    async write(offset, data) {
        if (this.options.forbidWrites ?? true)
            this.violate(`write of ${data.length} bytes at ${offset}`);
        return this.inner.write(offset, data);
    }
    size() { return this.inner.size(); }
    async truncate(size) {
        if (this.options.forbidWrites ?? true)
            this.violate(`truncate to ${size}`);
        return this.inner.truncate(size);
    }
    flush() { return this.inner.flush(); }
    close() { return this.inner.close(); }
    violate(message) {
        const text = `${this.path}: ${message}`;
        this.stats.violations.push(text);
        throw new GuardViolation(text);
    }
}
/** A Vfs whose storages are all `GuardedStorage`s sharing one stats record. */
export class GuardedVfs extends ForwardingVfs {
    options;
    stats = { reads: 0, bytesRead: 0, largestRead: 0, violations: [] };
    constructor(inner, options = {}) {
        super(inner);
        this.options = options;
    }
    async open(path, options) {
        return new GuardedStorage(await this.inner.open(path, options), this.options, this.stats);
    }
}
