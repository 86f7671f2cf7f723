import { ForwardingVfs, MemoryFile, MemoryVfs, } from '@blk/core';
import { SparseBytes } from './sparse.js';
/**
 * The unit of atomicity of the crash model: a storage write reaches the disk
 * one 512-byte sector (of the file, aligned to file offsets) at a time. A
 * sector that lands carries the whole sector as the page cache held it right
 * after that write (as an OS writes back whole pages), so "some sectors of a
 * write landed" is possible but "half a sector landed" is not.
 */
export const CRASH_SECTOR = 512;
/**
 * The operating system as the crash model sees it: per file, the durable
 * bytes, plus a global ordered list of volatile pieces. Fed with `CrashEvent`s
 * (live by `CrashSimVfs`, or replayed from a log by `CrashReplay`).
 */
export class CrashModel {
    names = new Map();
    files = new Map();
    pendingList = [];
    /** Number of events applied. */
    position = 0;
    apply(event) {
        const index = this.position++;
        switch (event.type) {
            case 'create':
                this.files.set(event.inode, { durable: new SparseBytes(), mtimeSec: 0 });
                this.names.set(event.path, event.inode);
                break;
            case 'reset': {
                const file = this.file(event.inode);
                file.durable = SparseBytes.from(event.content);
                file.mtimeSec = event.mtimeSec;
                this.pendingList = this.pendingList.filter((p) => p.inode !== event.inode);
                break;
            }
            case 'write': {
                this.file(event.inode).mtimeSec = event.mtimeSec;
                for (const piece of event.pieces) {
                    this.pendingList.push({ kind: 'write', inode: event.inode, offset: piece.offset, bytes: piece.bytes, event: index });
                }
                break;
            }
            case 'truncate':
                this.file(event.inode).mtimeSec = event.mtimeSec;
                this.pendingList.push({ kind: 'truncate', inode: event.inode, size: event.size, event: index });
                break;
            case 'flush':
                this.settle((p) => p.inode === event.inode);
                break;
            case 'sync-all':
                this.settle(() => true);
                break;
            case 'remove':
                this.names.delete(event.path);
                break;
            case 'rename': {
                const inode = this.names.get(event.from);
                if (inode !== undefined) {
                    this.names.delete(event.from);
                    this.names.set(event.to, inode);
                }
                break;
            }
            case 'mark':
                break;
        }
    }
    /** The volatile pieces, oldest first (the indices a `KeepSpec` refers to). */
    pending() {
        return this.pendingList;
    }
    /** The files as they would be found after a crash. */
    crash(options, cwd = '/') {
        const keep = options.mode === 'kill' ? 'all' : options.keep ?? 'none';
        const test = keepTest(keep);
        const states = new Map();
        this.pendingList.forEach((piece, i) => {
            if (!test(i, piece))
                return;
            let bytes = states.get(piece.inode);
            if (!bytes) {
                bytes = this.file(piece.inode).durable.clone();
                states.set(piece.inode, bytes);
            }
            if (piece.kind === 'truncate')
                bytes.truncate(piece.size);
            else
                bytes.write(piece.offset, piece.bytes);
        });
        const vfs = new MemoryVfs(cwd);
        const made = new Map();
        for (const [path, inode] of this.names) {
            let file = made.get(inode);
            if (!file) {
                const model = this.file(inode);
                file = toMemoryFile(states.get(inode) ?? model.durable, model.mtimeSec);
                made.set(inode, file);
            }
            vfs.put(path, file);
        }
        return vfs;
    }
    /** The durable bytes of a file (for tests of the model itself). */
    durable(path) {
        const inode = this.names.get(path);
        return inode === undefined ? undefined : this.file(inode).durable.toBytes();
    }
    settle(which) {
        const rest = [];
        for (const piece of this.pendingList) {
            if (!which(piece)) {
                rest.push(piece);
                continue;
            }
            const durable = this.file(piece.inode).durable;
            if (piece.kind === 'truncate')
                durable.truncate(piece.size);
            else
                durable.write(piece.offset, piece.bytes);
        }
        this.pendingList = rest;
    }
    file(inode) {
        const file = this.files.get(inode);
        if (!file)
            throw new Error(`crash model: unknown inode ${inode}`);
        return file;
    }
}
function keepTest(keep) {
    if (keep === 'all')
        return () => true;
    if (keep === 'none')
        return () => false;
    if (typeof keep === 'function')
        return keep;
    if (Array.isArray(keep))
        return (i) => keep[i] === true;
    const set = keep;
    return (i) => set.has(i);
}
function toMemoryFile(bytes, mtimeSec) {
    const file = new MemoryFile();
    for (const [offset, chunk] of bytes.extents()) {
        if (offset >= bytes.length)
            continue;
        file.writeAt(offset, chunk.subarray(0, Math.min(chunk.length, bytes.length - offset)));
    }
    file.length = bytes.length;
    file.mtimeSec = mtimeSec;
    return file;
}
/** Replays a recorded log event by event, so that a test can crash after any of them. */
export class CrashReplay {
    log;
    model = new CrashModel();
    constructor(log) {
        this.log = log;
    }
    /** Applies the next event and returns it (undefined at the end of the log). */
    step() {
        const event = this.log[this.model.position];
        if (event)
            this.model.apply(event);
        return event;
    }
    /** Applies events until `position` events have been applied. */
    seek(position) {
        while (this.model.position < position && this.step())
            ;
    }
    get position() {
        return this.model.position;
    }
}
/** True for events after which the on-disk state may differ (the "write points"). */
export function isWritePoint(event) {
    return event.type === 'write' || event.type === 'truncate' || event.type === 'flush';
}
/**
 * Up to `count` distinct post-crash states of the model's current position,
 * chosen deterministically from `rng`: the kill state (everything written
 * survives), the bare durable state, then, when there are few enough volatile
 * pieces, every subset; otherwise random subsets, in-order prefixes (a disk
 * that writes in order), "all but one" and "only one".
 */
export function* crashStates(model, rng, count, cwd = '/') {
    const n = model.pending().length;
    if (count <= 0)
        return;
    yield { label: 'kill', kept: new Array(n).fill(true), vfs: model.crash({ mode: 'kill' }, cwd) };
    if (n === 0 || count === 1)
        return;
    const seen = new Set([`a${n}`]);
    const emit = (label, kept) => {
        const key = kept.every((k) => k) ? `a${n}` : kept.map((k) => (k ? '1' : '0')).join('');
        if (seen.has(key))
            return undefined;
        seen.add(key);
        return { label, kept, vfs: model.crash({ mode: 'power-loss', keep: kept }, cwd) };
    };
    let made = 1;
    const none = emit('none', new Array(n).fill(false));
    if (none) {
        yield none;
        made++;
    }
    if (n <= 20 && 2 ** n - 2 <= count - made) {
        for (let mask = 1; mask < 2 ** n - 1; mask++) {
            const kept = Array.from({ length: n }, (_, i) => ((mask >>> i) & 1) === 1);
            const state = emit('exhaustive', kept);
            if (state)
                yield state;
        }
        return;
    }
    let attempts = 0;
    while (made < count && attempts < count * 4) {
        attempts++;
        const kind = rng.int(5);
        let kept;
        let label;
        if (kind === 0) {
            const j = rng.int(n);
            kept = Array.from({ length: n }, (_, i) => i < j);
            label = 'prefix';
        }
        else if (kind === 1) {
            const j = rng.int(n);
            kept = Array.from({ length: n }, (_, i) => i !== j);
            label = 'all-but-one';
        }
        else if (kind === 2) {
            const j = rng.int(n);
            kept = Array.from({ length: n }, (_, i) => i === j);
            label = 'only-one';
        }
        else {
            const p = rng.pick([0.1, 0.5, 0.9]);
            kept = Array.from({ length: n }, () => rng.bool(p));
            label = 'subset';
        }
        const state = emit(label, kept);
        if (state) {
            made++;
            yield state;
        }
    }
}
/**
 * A `Vfs` that models the operating system's page cache: every write lands in
 * a volatile cache (visible to readers at once), `flush()` of a storage makes
 * that file's writes durable, and `crash()` produces the files as a power loss
 * (durable + any subset of volatile sectors) or a killed process (everything
 * written) would leave them. Every change is logged, so that a test can replay
 * the log and crash after each write point (`CrashReplay`).
 */
export class CrashSimVfs extends ForwardingVfs {
    model = new CrashModel();
    log = [];
    /** Called after every logged event (awaited inside the storage call that caused it). */
    onEvent;
    inodes = new Map();
    nextInode = 1;
    constructor(options = {}) {
        super(new MemoryVfs(options.cwd ?? '/'));
    }
    /** Puts a file in place, durable at once (test set-up). */
    put(path, content = new Uint8Array()) {
        const abs = this.abs(path);
        const file = this.inner.put(abs, content);
        const inode = this.inodeOf(file, abs);
        this.emit({ type: 'reset', inode, content: content.slice(), mtimeSec: file.mtimeSec });
    }
    /** Logs a note from the test (kept in order with the storage events). */
    mark(label, data) {
        this.emit({ type: 'mark', label, data });
    }
    /** Makes everything durable (as `sync`), e.g. at the end of a test's set-up. */
    syncAll() {
        this.emit({ type: 'sync-all' });
    }
    /** The files as a crash now would leave them. */
    crash(options) {
        return this.model.crash(options, this.inner.cwd());
    }
    /** Number of write points (writes, truncates, flushes) logged so far. */
    get writePoints() {
        return this.log.filter(isWritePoint).length;
    }
    async open(path, options = {}) {
        const storage = await this.inner.open(path, options);
        const abs = this.abs(path);
        const known = this.inodes.has(storage.file);
        const inode = this.inodeOf(storage.file, abs);
        if (known && options.create && options.truncate) {
            this.emit({ type: 'reset', inode, content: new Uint8Array(), mtimeSec: storage.file.mtimeSec });
        }
        return new CrashStorage(this, storage, inode);
    }
    async remove(path) {
        await this.inner.remove(path);
        this.emit({ type: 'remove', path: this.abs(path) });
    }
    async rename(from, to) {
        await this.inner.rename(from, to);
        this.emit({ type: 'rename', from: this.abs(from), to: this.abs(to) });
    }
    /** @internal */
    emit(event) {
        this.log.push(event);
        this.model.apply(event);
        return this.onEvent?.(event, this.log.length - 1);
    }
    inodeOf(file, abs) {
        let inode = this.inodes.get(file);
        if (inode === undefined) {
            inode = this.nextInode++;
            this.inodes.set(file, inode);
            this.emit({ type: 'create', path: abs, inode });
        }
        return inode;
    }
    abs(path) {
        return this.inner.resolve(this.inner.cwd(), path);
    }
}
/** A storage of a `CrashSimVfs`: forwards to memory and logs every change. */
export class CrashStorage {
    vfs;
    storage;
    inode;
    constructor(vfs, storage, inode) {
        this.vfs = vfs;
        this.storage = storage;
        this.inode = inode;
    }
    get path() { return this.storage.path; }
    get readOnly() { return this.storage.readOnly; }
    read(offset, into) {
        return this.storage.read(offset, into);
    }
    async write(offset, data) {
        await this.storage.write(offset, data);
        if (data.length === 0)
            return;
        const file = this.storage.file;
        const pieces = [];
        const first = Math.floor(offset / CRASH_SECTOR);
        const last = Math.floor((offset + data.length - 1) / CRASH_SECTOR);
        for (let s = first; s <= last; s++) {
            const start = s * CRASH_SECTOR;
            const end = Math.min(start + CRASH_SECTOR, file.length);
            const bytes = new Uint8Array(end - start);
            file.readAt(start, bytes);
            pieces.push({ offset: start, bytes });
        }
        await this.vfs.emit({ type: 'write', inode: this.inode, offset, length: data.length, pieces, mtimeSec: file.mtimeSec });
    }
    size() {
        return this.storage.size();
    }
    async truncate(size) {
        await this.storage.truncate(size);
        await this.vfs.emit({ type: 'truncate', inode: this.inode, size, mtimeSec: this.storage.file.mtimeSec });
    }
    async flush() {
        await this.storage.flush();
        await this.vfs.emit({ type: 'flush', inode: this.inode });
    }
    close() {
        return this.storage.close();
    }
}
