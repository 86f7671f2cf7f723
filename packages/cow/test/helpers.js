/** Shared fixtures for the cow tests: storages that count, record or reorder I/O, and file builders. */
import { createHash } from 'node:crypto';
import { MemoryFile, MemoryStorage } from '@blk/core';
import { cowDriver } from '../src/index.js';
export const MiB = 1024 * 1024;
export const SS = 512;
/** The §14 test-vector backing file. */
export const VECTOR_BACKING = { path: '/tmp/base.img', size: 64 * MiB, mtimeSec: 0x5f000000 };
export function sha256(bytes) {
    return createHash('sha256').update(bytes).digest('hex');
}
/** Creates a COW image of `variant` in a fresh MemoryFile. */
export async function createFile(options = {}) {
    const file = new MemoryFile();
    const size = options.size ?? options.backing?.size ?? VECTOR_BACKING.size;
    const backing = 'backing' in options ? options.backing : { ...VECTOR_BACKING, size };
    const driverOptions = {};
    if (options.variant)
        driverOptions.variant = options.variant;
    if (options.alignment !== undefined)
        driverOptions.alignment = options.alignment;
    await cowDriver.create(new MemoryStorage(file, 'new.cow'), { size, backing, driverOptions });
    return file;
}
export async function openFile(file, options = {}) {
    const storage = file instanceof MemoryFile ? new MemoryStorage(file, options.path ?? 'test.cow', options.readOnly ?? false) : file;
    return await cowDriver.open(storage, {
        readOnly: options.readOnly ?? false,
        cache: options.cache ?? 'writeback',
        driverOptions: options.driverOptions,
    });
}
/** A sector-sized pattern that says which write (tag) put it at which sector. */
export function pattern(sector, count, tag = 1) {
    const out = new Uint8Array(count * SS);
    for (let s = 0; s < count; s++) {
        const v = new DataView(out.buffer, s * SS, SS);
        for (let i = 0; i < SS; i += 8) {
            v.setUint32(i, sector + s);
            v.setUint32(i + 4, tag);
        }
    }
    return out;
}
/** A `below` that fills with 0xEE and records each call. */
export function recordingBelow() {
    const calls = [];
    return {
        calls,
        below: async (offset, into) => {
            calls.push([offset, into.length]);
            into.fill(0xee);
        },
    };
}
/** Passes everything through to `inner` and records each call. */
export class RecordingStorage {
    inner;
    events = [];
    constructor(inner) {
        this.inner = inner;
    }
    get path() { return this.inner.path; }
    get readOnly() { return this.inner.readOnly; }
    read(offset, into) {
        this.events.push({ op: 'read', offset, length: into.length });
        return this.inner.read(offset, into);
    }
    write(offset, data) {
        this.events.push({ op: 'write', offset, length: data.length });
        return this.inner.write(offset, data);
    }
    size() { return this.inner.size(); }
    truncate(size) {
        this.events.push({ op: 'truncate', size });
        return this.inner.truncate(size);
    }
    flush() {
        this.events.push({ op: 'flush' });
        return this.inner.flush();
    }
    close() { return this.inner.close(); }
    count(op) {
        return this.events.filter((e) => e.op === op).length;
    }
    clear() {
        this.events.length = 0;
    }
}
/**
 * A storage that models a disk with a volatile write cache: writes land in
 * `file` at once (what a reader sees) and are logged; a flush makes every
 * earlier write durable. `crashImage(at, survives)` builds what a power cut
 * after the first `at` logged calls leaves: everything flushed by then, plus
 * the unflushed writes that `survives` picks (any subset may reach the platter,
 * in any order).
 */
export class CrashStorage {
    file;
    path;
    readOnly = false;
    initial;
    log = [];
    live;
    constructor(file, path = 'crash.cow') {
        this.file = file;
        this.path = path;
        this.initial = file.snapshot();
        this.live = new MemoryStorage(file, path);
    }
    read(offset, into) { return this.live.read(offset, into); }
    async write(offset, data) {
        await this.live.write(offset, data);
        this.log.push({ op: 'write', offset, data: data.slice() });
    }
    size() { return this.live.size(); }
    truncate() { throw new Error('CrashStorage does not model truncate'); }
    async flush() {
        this.log.push({ op: 'flush' });
    }
    close() { return this.live.close(); }
    crashImage(at, survives) {
        const out = new MemoryFile(this.initial);
        out.truncate(this.file.length);
        let pending = [];
        for (const entry of this.log.slice(0, at)) {
            if (entry.op === 'flush') {
                for (const w of pending)
                    out.writeAt(w.offset, w.data);
                pending = [];
            }
            else {
                pending.push(entry);
            }
        }
        pending.forEach((w, i) => { if (survives(i))
            out.writeAt(w.offset, w.data); });
        return out;
    }
}
/** Reads bitmap byte `index` straight from the file. */
export function bitmapByte(file, bitmapOffset, index) {
    const b = new Uint8Array(1);
    file.readAt(bitmapOffset + index, b);
    return b[0];
}
/** Byte equality without vitest's element-by-element deep compare (seconds for a MiB). */
export function sameBytes(a, b) {
    return Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength));
}
