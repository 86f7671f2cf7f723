/**
 * A Vfs that passes every call to another. Wrappers (locking, fault
 * injection, crash simulation, tracing) extend it and override only what
 * they change, usually `open`.
 */
export class ForwardingVfs {
    inner;
    constructor(inner) {
        this.inner = inner;
    }
    open(path, options) { return this.inner.open(path, options); }
    stat(path) { return this.inner.stat(path); }
    lstat(path) { return this.inner.lstat(path); }
    realpath(path) { return this.inner.realpath(path); }
    resolve(base, path) { return this.inner.resolve(base, path); }
    dirname(path) { return this.inner.dirname(path); }
    cwd() { return this.inner.cwd(); }
    exists(path) { return this.inner.exists(path); }
    remove(path) { return this.inner.remove(path); }
    rename(from, to) { return this.inner.rename(from, to); }
    /** Present when the inner Vfs has it (see Vfs.setAttributes). */
    get setAttributes() {
        const inner = this.inner;
        return inner.setAttributes ? (path, attributes) => inner.setAttributes(path, attributes) : undefined;
    }
}
