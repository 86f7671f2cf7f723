import { BlockError } from '@blk/core';
import { Rng } from './rng.js';
export const STORAGE_CALLS = ['read', 'write', 'flush', 'truncate', 'size', 'close'];
export const ALL_CALLS = [
    'open', 'read', 'write', 'flush', 'truncate', 'size', 'close', 'stat', 'lstat', 'realpath', 'exists', 'remove', 'rename',
];
export const FAULT_KINDS = ['EIO', 'ENOSPC', 'short-read', 'short-write'];
/**
 * A `Vfs` (and its storages) that fails chosen calls: "fail the 7th write
 * with ENOSPC", "every flush from the 3rd on fails", ... Counts every call by
 * kind, logs every injected fault and tracks open handles, so that a test can
 * check that a failure reached the caller as a typed error and that no handle
 * leaked.
 */
export class FaultyVfs {
    inner;
    /** Calls seen, by kind (faulted ones included). */
    counts = Object.fromEntries(ALL_CALLS.map((c) => [c, 0]));
    /** Every injected fault, in order. */
    injected = [];
    /** Storages opened through this vfs and not yet closed. */
    handles = new Set();
    rules = [];
    calls = 0;
    rng;
    constructor(inner, rules = [], options = {}) {
        this.inner = inner;
        this.rng = new Rng(options.seed ?? 1);
        for (const rule of rules)
            this.addRule(rule);
    }
    addRule(rule) {
        this.rules.push({ rule, seen: 0 });
        return this;
    }
    /** Removes every rule (the device is healthy again); counts are kept. */
    disarm() {
        this.rules = [];
        return this;
    }
    /** Total calls seen. */
    get totalCalls() {
        return this.calls;
    }
    /** Number of storages opened and not closed. */
    get openHandles() {
        return this.handles.size;
    }
    /** @internal Counts the call; returns the fault to inject, if any. */
    tick(call, path) {
        this.calls++;
        this.counts[call]++;
        let fault;
        for (const armed of this.rules) {
            const r = armed.rule;
            const kinds = r.call;
            const matches = kinds === 'any' || kinds === call || (Array.isArray(kinds) && kinds.includes(call));
            if (!matches || !pathMatches(r.path, path))
                continue;
            armed.seen++;
            const nth = r.nth ?? 1;
            const times = r.times ?? 1;
            if (fault === undefined && armed.seen >= nth && armed.seen < nth + times)
                fault = r.fault;
        }
        return fault;
    }
    /** @internal */
    record(call, fault, path, offset) {
        const entry = { call, fault, path, callNumber: this.calls };
        if (offset !== undefined)
            entry.offset = offset;
        this.injected.push(entry);
    }
    fail(call, path) {
        const fault = this.tick(call, path);
        if (fault === undefined)
            return;
        this.record(call, fault, path);
        throw faultError(fault === 'ENOSPC' ? 'ENOSPC' : 'EIO', call, path);
    }
    async open(path, options) {
        this.fail('open', path);
        const storage = new FaultyStorage(this, await this.inner.open(path, options));
        this.handles.add(storage);
        return storage;
    }
    async stat(path) { this.fail('stat', path); return this.inner.stat(path); }
    async lstat(path) { this.fail('lstat', path); return this.inner.lstat(path); }
    async realpath(path) { this.fail('realpath', path); return this.inner.realpath(path); }
    async exists(path) { this.fail('exists', path); return this.inner.exists(path); }
    async remove(path) { this.fail('remove', path); return this.inner.remove(path); }
    async rename(from, to) { this.fail('rename', from); return this.inner.rename(from, to); }
    resolve(base, path) { return this.inner.resolve(base, path); }
    dirname(path) { return this.inner.dirname(path); }
    cwd() { return this.inner.cwd(); }
}
/** A storage of a `FaultyVfs` (or stand-alone over any storage with `FaultyVfs.wrap`). */
export class FaultyStorage {
    owner;
    inner;
    closed = false;
    constructor(owner, inner) {
        this.owner = owner;
        this.inner = inner;
    }
    get path() { return this.inner.path; }
    get readOnly() { return this.inner.readOnly; }
    async read(offset, into) {
        const fault = this.owner.tick('read', this.path);
        if (fault === undefined)
            return this.inner.read(offset, into);
        this.owner.record('read', fault, this.path, offset);
        if (fault !== 'short-read')
            throw faultError(fault === 'ENOSPC' ? 'ENOSPC' : 'EIO', 'read', this.path, offset);
        if (into.length === 0)
            return 0;
        const want = this.owner.rng.int(into.length);
        const n = await this.inner.read(offset, into.subarray(0, want));
        return n;
    }
    async write(offset, data) {
        const fault = this.owner.tick('write', this.path);
        if (fault === undefined)
            return this.inner.write(offset, data);
        this.owner.record('write', fault, this.path, offset);
        if (fault === 'short-write' && data.length > 0) {
            // File systems allocate whole blocks: the stored prefix ends on a 512-byte boundary of the file.
            const cut = this.owner.rng.int(data.length);
            const n = Math.max(0, Math.min(data.length, Math.floor((offset + cut) / 512) * 512 - offset));
            if (n > 0)
                await this.inner.write(offset, data.subarray(0, n));
            throw faultError('ENOSPC', 'write', this.path, offset + n, `short write (${n} of ${data.length} bytes)`);
        }
        throw faultError(fault === 'ENOSPC' ? 'ENOSPC' : 'EIO', 'write', this.path, offset);
    }
    async size() {
        this.simple('size');
        return this.inner.size();
    }
    async truncate(size) {
        this.simple('truncate');
        return this.inner.truncate(size);
    }
    async flush() {
        this.simple('flush');
        return this.inner.flush();
    }
    async close() {
        const fault = this.owner.tick('close', this.path);
        if (!this.closed) {
            this.closed = true;
            this.owner.handles.delete(this);
        }
        // close(2) releases the descriptor even when it reports an error.
        await this.inner.close();
        if (fault !== undefined) {
            this.owner.record('close', fault, this.path);
            throw faultError(fault === 'ENOSPC' ? 'ENOSPC' : 'EIO', 'close', this.path);
        }
    }
    simple(call) {
        const fault = this.owner.tick(call, this.path);
        if (fault === undefined)
            return;
        this.owner.record(call, fault, this.path);
        throw faultError(fault === 'ENOSPC' ? 'ENOSPC' : 'EIO', call, this.path);
    }
}
/** An injected failure, shaped as NodeFileStorage reports a system error. */
export function faultError(code, op, path, offset, detail) {
    const text = detail ?? (code === 'EIO' ? 'input/output error (injected)' : 'no space left on device (injected)');
    const cause = Object.assign(new Error(`${code}: ${text}`), { code, injected: true });
    return new BlockError('io', `${op} failed${offset !== undefined ? ` at offset ${offset}` : ''}: ${text}`, { path, code, cause, offset });
}
/** True for errors `faultError` made (directly or as a cause). */
export function isInjected(err) {
    for (let e = err, depth = 0; e !== undefined && e !== null && depth < 8; depth++) {
        if (typeof e === 'object' && e.injected === true)
            return true;
        e = e.cause;
    }
    return false;
}
function pathMatches(rule, path) {
    if (rule === undefined)
        return true;
    if (typeof rule === 'string')
        return path === rule || path.endsWith(`/${rule}`) || path.endsWith(rule);
    if (rule instanceof RegExp)
        return rule.test(path);
    return rule(path);
}
