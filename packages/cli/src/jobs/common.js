/**
 * What the jobs (commit, rebase, convert) share: options, opening images on a
 * Vfs with the CLI's backing policy, and the copy loop's helpers. Nothing here
 * touches node:fs or node:path: every file-system action goes through a Vfs.
 */
import { BlockError, checkApproval, checkBackingNode, checkConfinement, exactBackingPath, isBlockError } from '@blk/core';
import { hostVfs, openImage } from '../images.js';
import { backingDevicesAllowed } from '../backing-devices.js';
/** Large I/O unit for copy loops. */
export const CHUNK = 1024 * 1024;
/** I/O unit of the convert and commit copy loops (larger requests, fewer round trips). */
export const COPY_CHUNK = 4 * 1024 * 1024;
/** Chunks the convert and commit copy loops keep in flight (read one while writing another). */
export const COPY_DEPTH = 4;
export const CACHE_MODES = ['writeback', 'unsafe', 'none', 'writethrough', 'directsync'];
/** Checks a `-t` value. */
export function parseCacheMode(value) {
    if (value === undefined)
        return 'writeback';
    if (CACHE_MODES.includes(value))
        return value;
    throw new RangeError(`invalid cache mode '${value}': use one of ${CACHE_MODES.join(', ')}`);
}
/** Just the backing rules of `o` (to hand a job's rules on to the images it opens). */
export function rulesIn(o) {
    return { backingDirs: o.backingDirs, forbidBacking: o.forbidBacking, approve: o.approve };
}
/** openImage's options for the CLI's options (the Vfs aside). */
export function cliOpenOptions(o) {
    const options = { readOnly: o.readOnly, backing: backingPolicy(o) };
    if (o.format !== undefined)
        options.format = o.format;
    if (o.formatAssumed)
        options.formatAssumed = true;
    if (o.forceShare)
        options.forceShare = true;
    if (o.onWarning)
        options.onWarning = o.onWarning;
    return options;
}
export function backingPolicy(o) {
    const policy = {};
    if (o.backingDevices ?? backingDevicesAllowed())
        policy.allowDevices = true;
    // 'ignore' (describe the image alone) stays possible under --forbid-backing: nothing is opened.
    const mode = o.backingMode ?? (o.forbidBacking ? 'forbid' : undefined);
    if (mode)
        policy.mode = mode;
    if (o.backingDirs && o.backingDirs.length > 0)
        policy.allowedDirs = [...o.backingDirs];
    if (o.approve)
        policy.approve = o.approve;
    if (o.onMismatch)
        policy.onMismatch = o.onMismatch;
    const first = o.backingFormat;
    if (o.backingProbe) {
        policy.format = first ? (ref, depth) => (depth === 1 ? first : 'probe') : 'probe';
    }
    else if (first) {
        // Below the first level, undefined keeps the default (recorded format, else raw unless it looks like another format).
        policy.format = (ref, depth) => (depth === 1 ? first : undefined);
    }
    return policy;
}
/** Decides whether `image`'s backing file may be opened under `rules`, without opening it. */
export async function judgeBacking(vfs, image, rules) {
    const ref = image.backingReference;
    if (!ref)
        return undefined;
    const resolved = image.info().backing?.resolved;
    const verdict = { stored: ref.path, resolved, allowed: true };
    try {
        await checkBackingAllowed(vfs, image, rules);
    }
    catch (err) {
        if (!isBlockError(err))
            throw err;
        verdict.allowed = false;
        verdict.reason = err.detail;
    }
    return verdict;
}
/** Throws `backing-forbidden` unless the rules let blk open the backing file `image` names. */
async function checkBackingAllowed(vfs, image, rules) {
    const ref = image.backingReference;
    if (!ref)
        throw new BlockError('backing-missing', 'the image has no backing file', { path: image.path });
    exactBackingPath(ref, image.path); // a path that is not UTF-8 has no resolved form
    const resolved = image.info().backing?.resolved;
    if (resolved === undefined)
        throw new BlockError('backing-missing', 'the image has no backing file', { path: image.path });
    if (rules.forbidBacking) {
        throw new BlockError('backing-forbidden', `image names backing file '${ref.path}' and backing files are forbidden (--forbid-backing)`, { path: image.path });
    }
    const policy = backingPolicy(rules);
    await checkConfinement(vfs, policy, image.path, resolved);
    await checkApproval(policy, image.path, resolved);
    // No FIFO (its open would block), socket, character device or directory; no device unless allowed.
    const st = await vfs.stat(resolved).catch(() => undefined); // Missing: the open says so.
    if (st)
        checkBackingNode(policy, image.path, resolved, st);
    return resolved;
}
/**
 * Opens the backing file `top` names, for a job that works on it directly
 * (commit writes into it; check walks the chain a level at a time), under
 * the rules openImage applies inside a chain: the user's backing rules, and
 * a format that is the recorded one, else raw only if the file does not
 * carry another format's header (a cow file under a QEMU cow file must not
 * be written over as raw).
 */
export async function openBackingOf(vfs, top, o, named) {
    const resolved = await checkBackingAllowed(vfs, top, o);
    const ref = top.backingReference;
    // `named` (-F) is this file's format, not its own backing file's.
    const policy = backingPolicy({ ...o, backingFormat: undefined, backingMode: o.backingMode });
    const options = {
        vfs,
        readOnly: o.readOnly,
        backing: policy,
        // A path from the image: a device only when allowed (checked again on the node actually opened).
        blockDevices: policy.allowDevices === true,
    };
    if (o.forceShare)
        options.forceShare = true;
    if (o.onWarning)
        options.onWarning = o.onWarning;
    if (named !== undefined) {
        options.format = named;
    }
    else if (!o.backingProbe) {
        options.format = ref.format ?? 'raw';
        options.formatAssumed = ref.format === undefined;
    }
    return openImage(resolved, options);
}
/**
 * Opens a backing file the user named (rebase -b, convert -B) to read it:
 * raw unless a format is given, and then refused if it carries another
 * format's header; its own chain opens under the user's rules.
 */
export async function openNamedBacking(vfs, path, format, rules) {
    return openImage(path, {
        vfs,
        readOnly: true,
        format: format ?? 'raw',
        formatAssumed: format === undefined,
        backing: backingPolicy(rules),
    });
}
/** Opens an image on `vfs` as the CLI's options say. */
export async function openOn(vfs, path, o) {
    return openImage(path, { ...cliOpenOptions(o), vfs });
}
/**
 * Refuses, before anything is written, a copy of `runs` of `source` into
 * `target` that would make `target` probe as another format: the guest data
 * landing in the bytes that decide how a raw file probes (its first and last
 * bytes) must not turn it into, say, an overlay naming a host file. Only
 * images whose writes are guarded (format probed or assumed) are checked; the
 * guard also checks every write as it happens.
 */
export async function checkCopyKeepsFormat(target, source, runs) {
    await checkCopiesKeepFormat(target, [{ source, runs }]);
}
/** checkCopyKeepsFormat for several copies applied in order (commit -b: the lowest layer first, the top last). */
export async function checkCopiesKeepFormat(target, copies) {
    const writes = [];
    for (const { source, runs } of copies) {
        for (const range of target.probeGuardRanges()) {
            for (const run of runs) {
                const from = Math.max(run.start, range.start);
                const to = Math.min(run.start + run.length, range.start + range.length, source.size);
                if (from >= to)
                    continue;
                const data = new Uint8Array(to - from);
                await source.readInto(from, data);
                writes.push({ offset: from, data });
            }
        }
    }
    await target.checkWrites(writes).catch((err) => {
        if (!isBlockError(err, 'probe-guard'))
            throw err;
        throw new BlockError('probe-guard', `refusing to copy guest data that would make this file probe as `
            + `${err.format ?? 'another format'} (at offset ${err.offset ?? 0}): it is read as raw only because no format `
            + 'was named, and would then no longer be; nothing was written', { path: target.path, offset: err.offset, format: err.format });
    });
}
/** The job's Vfs: the one given, else the host's (with locks). */
export function jobVfs(options) {
    return options.vfs ?? hostVfs();
}
/**
 * The job's Vfs as its cache mode wants it: with `unsafe`, every storage it
 * opens ignores flush() (nothing is ever fsync'ed); otherwise `vfs` itself.
 */
export function cacheVfs(vfs, options) {
    const mode = parseCacheMode(options.cache);
    if (mode !== 'unsafe')
        return vfs;
    const wrapped = {
        open: async (path, o) => unflushed(await vfs.open(path, o)),
        stat: (path) => vfs.stat(path),
        lstat: (path) => vfs.lstat(path),
        realpath: (path) => vfs.realpath(path),
        resolve: (base, path) => vfs.resolve(base, path),
        dirname: (path) => vfs.dirname(path),
        cwd: () => vfs.cwd(),
        exists: (path) => vfs.exists(path),
        remove: (path) => vfs.remove(path),
        rename: (from, to) => vfs.rename(from, to),
    };
    if (vfs.setAttributes)
        wrapped.setAttributes = (path, attributes) => vfs.setAttributes(path, attributes);
    return wrapped;
}
/** `storage` whose flush() does nothing; reads, readSync, extentAt and zeroRange are the storage's own. */
function unflushed(storage) {
    return {
        get path() { return storage.path; },
        get readOnly() { return storage.readOnly; },
        readSync: storage.readSync?.bind(storage),
        extentAt: storage.extentAt?.bind(storage),
        zeroRange: storage.zeroRange?.bind(storage),
        read: (offset, into) => storage.read(offset, into),
        write: (offset, data) => storage.write(offset, data),
        size: () => storage.size(),
        truncate: (size) => storage.truncate(size),
        flush: async () => { },
        close: () => storage.close(),
    };
}
/**
 * A copy loop's pipeline: up to `depth` tasks in flight, each with a slot of
 * buffers of its own, so that reading one chunk overlaps writing another
 * when the storage's I/O is asynchronous (and costs nothing when it is not).
 * The first failure stops new tasks and is thrown by start() or drain().
 */
export class CopyPipeline {
    free;
    inflight = new Set();
    failure;
    constructor(depth, slot) {
        this.free = Array.from({ length: Math.max(1, depth) }, slot);
    }
    /** Waits for a free slot, then starts `task` on it without waiting for it to finish. */
    async start(task) {
        while (this.free.length === 0 && !this.failure)
            await Promise.race(this.inflight);
        if (this.failure)
            throw this.failure.err;
        const slot = this.free.pop();
        const p = task(slot)
            .then(() => undefined, (err) => { this.failure ??= { err }; })
            .finally(() => {
            this.free.push(slot);
            this.inflight.delete(p);
        });
        this.inflight.add(p);
    }
    /** Waits for every task; throws the first failure. */
    async drain() {
        while (this.inflight.size > 0)
            await Promise.race(this.inflight);
        if (this.failure)
            throw this.failure.err;
    }
    /** Waits for every task, ignoring failures (before cleaning up after an error). */
    async settle() {
        while (this.inflight.size > 0)
            await Promise.race(this.inflight);
    }
}
/** The copy loop's I/O unit, checked. */
export function jobChunk(options, fallback = CHUNK) {
    const chunk = options.chunkSize ?? fallback;
    if (!Number.isSafeInteger(chunk) || chunk <= 0 || chunk % 512 !== 0) {
        throw new RangeError(`chunk size ${chunk} is not a positive multiple of 512`);
    }
    return chunk;
}
/**
 * A backing file named on the command line, as qemu-img resolves it: a
 * relative name is relative to the directory of the image that will refer to
 * it, not to the current directory. An absolute name is kept as given (it is
 * what the image will record). Vfs paths are POSIX-style.
 */
export function resolveBackingArg(vfs, imagePath, backing) {
    if (backing.startsWith('/'))
        return backing;
    return vfs.resolve(vfs.dirname(vfs.resolve(vfs.cwd(), imagePath)), backing);
}
/** A file's identity (device and inode), following symlinks; undefined when it cannot be stat'ed or the Vfs has none. */
export async function fileId(vfs, path) {
    return (await vfs.stat(path).catch(() => undefined))?.id;
}
/** The identities of every file of an opened image's chain (top first), with the path each was opened by. */
export async function chainFiles(vfs, image) {
    const files = new Map();
    for (let layer = image; layer; layer = layer.backing) {
        const id = await fileId(vfs, layer.path);
        if (id !== undefined)
            files.set(id, layer.path);
    }
    return files;
}
/**
 * Refuses `target` (a file the job is about to write or replace) when it is
 * one of the files of `chain` (compared by device and inode, so that neither
 * a symlink nor a hard link hides it): writing it would destroy data the job
 * still reads, or make an image its own backing file.
 */
export async function refuseTargetInChain(vfs, target, chain, what) {
    const id = await fileId(vfs, target);
    const same = id === undefined ? undefined : chain.get(id);
    if (same !== undefined) {
        throw new BlockError('backing-loop', `is also ${what} (${same}): the same file cannot be both`, { path: target });
    }
}
/** Whole seconds of a file's mtime (floored), or undefined when it cannot be stat'ed. */
export async function mtimeOf(vfs, path) {
    try {
        return (await vfs.stat(path)).mtimeSec;
    }
    catch {
        return undefined;
    }
}
/** Turns the `onProgress` callback into the three calls the copy loops make. */
export function progressOf(options, total) {
    const on = options.onProgress;
    if (!on)
        return { update() { }, end() { } };
    on({ phase: 'start', done: 0, total });
    let last = 0;
    return {
        update(done) {
            last = done;
            on({ phase: 'update', done, total });
        },
        end() {
            on({ phase: 'end', done: last, total });
        },
    };
}
let lastYield = 0;
/**
 * Lets signals, timers and output run during long loops of synchronous I/O
 * (file I/O is synchronous under the Promise API, so a loop of awaits never
 * returns to the event loop by itself). Yields at most every 10 ms.
 */
export async function yieldToEventLoop() {
    const now = performance.now();
    if (now - lastYield < 10)
        return;
    lastYield = now;
    await new Promise((resolve) => setImmediate(resolve));
}
let zeros = Buffer.alloc(1024 * 1024);
/** True when every byte of `buf` is zero (memcmp against a zero buffer). */
export function isZero(buf) {
    if (buf.length > zeros.length)
        zeros = Buffer.alloc(buf.length);
    return Buffer.from(buf.buffer, buf.byteOffset, buf.length).equals(zeros.subarray(0, buf.length));
}
/** True when `a` and `b` hold the same bytes (memcmp). */
export function sameBytes(a, b) {
    return Buffer.from(a.buffer, a.byteOffset, a.length).equals(b);
}
