/**
 * How `blk io` opens a file: qemu-io's open flags (`-r -s -n -k -U`,
 * `-t cache`, `-i aio`, `-d discard`, `-o key=value`) parsed with qemu-io's
 * error texts, and turned into blk's open options.
 *
 * Meanings (qemu-io 7.2's, or blk's equivalent):
 * - `-t` (bdrv_parse_cache_mode): `writethrough` and `directsync` flush after
 *   every write request; `writeback` and `none`/`off` flush when the file is
 *   closed (and on `flush`); `unsafe` never syncs. blk has no O_DIRECT, so
 *   `none`/`directsync` differ from their writeback/writethrough twins only
 *   in the page cache, which blk does not bypass. `-n` is `-t none`.
 * - `-i` threads|native|io_uring and `-k`: accepted; blk's I/O is the same
 *   for all three.
 * - `-d` unmap|on (the default) or ignore|off: with ignore, `discard` and
 *   `write -z -u` do not deallocate anything (QEMU drops BDRV_O_UNMAP).
 * - `-s`: writes go to a temporary cow overlay on the file, deleted when the
 *   file is closed (QEMU uses a temporary qcow2); the file itself is opened
 *   read-only.
 * - `-U`: open without taking the image's lock (`forceShare` open option).
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as nodePath from 'node:path';
import { BlockError, isBlockError } from '@blk/core';
import { backingPolicy, cacheVfs } from '../jobs/common.js';
import { createImage, hostVfs, openImage } from '../images.js';
import { warn } from '../errors.js';
/** bdrv_parse_cache_mode(): undefined for an unknown mode. */
export function parseCache(mode) {
    switch (mode) {
        case 'none':
        case 'off': return { writethrough: false, noFlush: false, direct: true };
        case 'writeback': return { writethrough: false, noFlush: false, direct: false };
        case 'directsync': return { writethrough: true, noFlush: false, direct: true };
        case 'writethrough': return { writethrough: true, noFlush: false, direct: false };
        case 'unsafe': return { writethrough: false, noFlush: true, direct: false };
        default: return undefined;
    }
}
/** `-n`, `-t none`: writeback through the page cache in blk (which has no O_DIRECT). */
export const NOCACHE = { writethrough: false, noFlush: false, direct: true };
/** bdrv_parse_aio(). */
export function validAio(mode) {
    return mode === 'threads' || mode === 'native' || mode === 'io_uring';
}
/** QEMU's checks of a combination of open flags (raw-posix and blk_new_open): the message, or undefined when fine. */
export function openConflict(o) {
    if (o.nativeAio && !o.cache.direct) {
        return 'aio=native was specified, but it requires cache.direct=on, which was not specified.';
    }
    if (o.forceShare && !o.readOnly)
        return 'force-share=on can only be used with read-only images';
    return undefined;
}
/** bdrv_parse_discard_flags(): true = unmap, false = ignore, undefined = unknown. */
export function parseDiscard(mode) {
    if (mode === 'on' || mode === 'unmap')
        return true;
    if (mode === 'off' || mode === 'ignore')
        return false;
    return undefined;
}
function onOff(value) {
    if (value === 'on' || value === 'true' || value === 'yes')
        return true;
    if (value === 'off' || value === 'false' || value === 'no')
        return false;
    return undefined;
}
/**
 * `open -o key=value,...` (`,,` is a literal comma): `driver=FMT`,
 * `read-only=on|off`, `discard=unmap|ignore`, `force-share=on|off`,
 * `cache.no-flush=on|off`. Applies them to `into`; returns an error
 * message for anything else.
 */
export function applyOpenOptions(text, into) {
    const items = text.replace(/,,/g, '\0').split(',').filter((s) => s !== '').map((s) => s.replace(/\0/g, ','));
    for (const item of items) {
        const eq = item.indexOf('=');
        const key = eq < 0 ? item : item.slice(0, eq);
        const value = eq < 0 ? 'on' : item.slice(eq + 1);
        const bad = `Invalid value '${value}' for option '${key}'`;
        switch (key) {
            case 'driver':
                into.format = value;
                break;
            case 'read-only': {
                const v = onOff(value);
                if (v === undefined)
                    return bad;
                into.readOnly = v;
                break;
            }
            case 'force-share': {
                const v = onOff(value);
                if (v === undefined)
                    return bad;
                into.forceShare = v;
                break;
            }
            case 'cache.no-flush': {
                const v = onOff(value);
                if (v === undefined)
                    return bad;
                into.cache = { ...into.cache, noFlush: v };
                break;
            }
            case 'discard': {
                const v = parseDiscard(value);
                if (v === undefined)
                    return bad;
                into.unmap = v;
                break;
            }
            default:
                return `option '${key}' is not supported (blk io takes driver, read-only, discard, force-share, cache.no-flush)`;
        }
    }
    return undefined;
}
/** Below the -s overlay: the file as the format it opened as, its backing file as -F names it (or the default). */
function snapshotPolicy(format, o) {
    const policy = backingPolicy({ backingProbe: o.backingProbe, backingFormat: o.backingFormat, ...o.rules });
    const below = policy.format;
    policy.format = (ref, depth) => {
        if (depth === 1)
            return format;
        return typeof below === 'function' ? below(ref, depth - 1) : below;
    };
    return policy;
}
/** The temporary overlay's sector: cow images are whole 512-byte sectors. */
const SNAPSHOT_SECTOR = 512;
export async function openIoFile(name, o) {
    const conflict = openConflict(o);
    if (conflict !== undefined)
        throw new Error(conflict);
    const vfs = o.cache.noFlush ? cacheVfs(hostVfs(), { cache: 'unsafe' }) : hostVfs();
    const cache = o.cache.noFlush ? 'unsafe' : o.cache.writethrough ? 'writethrough' : 'writeback';
    // forceShare: the -U open option of @blk/images (shared-lock semantics are its business).
    const base = {
        vfs, cache, backing: backingPolicy({ backingProbe: o.backingProbe, backingFormat: o.backingFormat, ...o.rules }),
        onWarning: warn,
    };
    if (o.forceShare)
        base.forceShare = true;
    if (!o.snapshot) {
        const image = await openImage(name, { ...base, readOnly: o.readOnly, ...(o.format !== undefined ? { format: o.format } : {}) });
        return { name, image, options: o, close: () => image.close() };
    }
    // -s: the file opens read-only under a throw-away overlay.
    const below = await openImage(name, { ...base, readOnly: true, ...(o.format !== undefined ? { format: o.format } : {}) });
    const format = below.format;
    const size = below.size;
    await below.close();
    if (size % SNAPSHOT_SECTOR !== 0) {
        throw new BlockError('not-supported', `-s needs a size that is a multiple of ${SNAPSHOT_SECTOR} bytes (the temporary `
            + `overlay is a cow image); this image has ${size}`, { path: name });
    }
    const dir = fs.mkdtempSync(nodePath.join(os.tmpdir(), 'blk-io-snapshot-'));
    try {
        const overlay = nodePath.join(dir, 'snapshot.cow');
        // QEMU's layout: it records no backing size to check (a raw file of 1000 bytes is a 1024-byte disk).
        await createImage(overlay, {
            format: 'cow', backing: { path: nodePath.resolve(name), format }, vfs, driverOptions: { variant: 'v2-qemu-lp64' },
        });
        const image = await openImage(overlay, {
            ...base, format: 'cow', readOnly: o.readOnly, backing: snapshotPolicy(format, o),
        });
        return { name, image, options: o, close: () => image.close() };
    }
    catch (err) {
        // The overlay is ours, not the user's: say which file the snapshot was for.
        const detail = isBlockError(err) ? err.detail : err instanceof Error ? err.message : String(err);
        throw new BlockError(isBlockError(err) ? err.kind : 'io', `cannot make the -s overlay: ${detail}`, { path: name, cause: err });
    }
    finally {
        // The open descriptor keeps the overlay alive until close; nothing is left behind, even after kill -9.
        fs.rmSync(dir, { recursive: true, force: true });
    }
}
