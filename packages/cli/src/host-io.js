import { hostVfs } from './images.js';
/** Requests at least this long use the thread pool. */
const THREADED_MIN = 128 * 1024;
function hasPoolIo(storage) {
    const s = storage;
    return typeof s.readOnPool === 'function' && typeof s.writeOnPool === 'function';
}
/** Sends large reads and writes of a storage to the thread pool; everything else is the storage's own. */
class ThreadedStorage {
    inner;
    min;
    /** Where the file's data and holes are: the inner storage's answer (convert skips holes with it). */
    extentAt;
    /** Zeroing and hole punching (fallocate): the inner storage's, so that write-zeroes stays cheap. */
    zeroRange;
    constructor(inner, min) {
        this.inner = inner;
        this.min = min;
        this.extentAt = inner.extentAt?.bind(inner);
        this.zeroRange = inner.zeroRange?.bind(inner);
    }
    get path() { return this.inner.path; }
    get readOnly() { return this.inner.readOnly; }
    read(offset, into) {
        return into.length >= this.min ? this.inner.readOnPool(offset, into) : this.inner.read(offset, into);
    }
    write(offset, data) {
        return data.length >= this.min ? this.inner.writeOnPool(offset, data) : this.inner.write(offset, data);
    }
    size() { return this.inner.size(); }
    truncate(size) { return this.inner.truncate(size); }
    flush() { return this.inner.flush(); }
    close() { return this.inner.close(); }
}
/** A Vfs whose storages send large reads and writes to the thread pool (when they can: NodeFileStorage). */
export class ThreadedIoVfs {
    inner;
    min;
    /** `min`: requests at least this long go to the thread pool (0: every read and write). */
    constructor(inner, min = THREADED_MIN) {
        this.inner = inner;
        this.min = min;
    }
    async open(path, options) {
        const storage = await this.inner.open(path, options);
        return hasPoolIo(storage) ? new ThreadedStorage(storage, this.min) : storage;
    }
    stat(path) { return this.inner.stat(path); }
    lstat(path) { return this.inner.lstat(path); }
    realpath(path) { return this.inner.realpath(path); }
    resolve(base, path) { return this.inner.resolve(base, path); }
    dirname(path) { return this.inner.dirname(path); }
    cwd() { return this.inner.cwd(); }
    exists(path) { return this.inner.exists(path); }
    remove(path) { return this.inner.remove(path); }
    rename(from, to) { return this.inner.rename(from, to); }
    setAttributes(path, attributes) {
        if (!this.inner.setAttributes)
            return Promise.reject(new Error('this file system has no owners or modes'));
        return this.inner.setAttributes(path, attributes);
    }
}
let jobVfs_;
/** hostVfs() with threaded large I/O: what blk convert and blk commit run on. */
export function hostJobVfs() {
    jobVfs_ ??= new ThreadedIoVfs(hostVfs());
    return jobVfs_;
}
let poolVfs_;
/**
 * hostVfs() with every read and write on the thread pool, small ones too:
 * what blk bench runs on, so that its requests are in flight together as
 * qemu-img's aio=threads requests are (not run one by one on the main thread).
 */
export function hostPoolVfs() {
    poolVfs_ ??= new ThreadedIoVfs(hostVfs(), 0);
    return poolVfs_;
}
