/** Helpers shared by the commands: opening images with CLI options, files, signals. */
import * as fs from 'node:fs';
import * as nodePath from 'node:path';
import { cliOpenOptions, isZero } from './jobs/common.js';
import { warn } from './errors.js';
import { openImage } from './images.js';
import { ownerMayRead } from './owner-rule.js';
export { CHUNK, backingPolicy, isZero, yieldToEventLoop } from './jobs/common.js';
/**
 * The flags as the jobs' BackingRules. Without --backing-dir or
 * --forbid-backing, the default rule applies: an image may name only files
 * its owner can read (owner-rule.ts).
 */
export function rulesOf(opts) {
    const explicit = opts.forbidBacking === true || (opts.backingDir?.length ?? 0) > 0;
    return { backingDirs: opts.backingDir, forbidBacking: opts.forbidBacking, approve: explicit ? undefined : ownerMayRead };
}
/** Opens an image as the CLI's options say. */
export async function openCli(path, o) {
    return openImage(path, cliOpenOptions({ onWarning: warn, ...o }));
}
/** Bytes the file occupies on disk (st_blocks * 512), as qemu-img's actual-size. */
export function allocatedBytes(path) {
    try {
        const st = fs.statSync(path, { bigint: true });
        return Number(st.blocks * 512n);
    }
    catch {
        return undefined;
    }
}
/** Whole seconds of a file's mtime (floored from nanoseconds), or undefined when it is absent. */
export function mtimeSec(path) {
    try {
        return Number(fs.statSync(path, { bigint: true }).mtimeNs / 1000000000n);
    }
    catch {
        return undefined;
    }
}
/**
 * A backing file named on the command line, as qemu-img resolves it: a
 * relative name is relative to the directory of the image that will refer
 * to it, not to the current directory.
 */
export function resolveBackingArg(imagePath, backing) {
    if (nodePath.isAbsolute(backing))
        return backing;
    return nodePath.resolve(nodePath.dirname(nodePath.resolve(imagePath)), backing);
}
/**
 * Runs `cleanup` (synchronously) if the process is interrupted by SIGINT,
 * SIGTERM or SIGHUP, then exits with 128 + the signal number. Returns a
 * function that removes the handlers.
 */
export function onInterrupt(cleanup) {
    const signals = [['SIGINT', 2], ['SIGTERM', 15], ['SIGHUP', 1]];
    const handlers = signals.map(([sig, num]) => {
        const handler = () => {
            try {
                cleanup();
            }
            finally {
                process.stderr.write(`blk: interrupted by ${sig}\n`);
                process.exit(128 + num);
            }
        };
        process.on(sig, handler);
        return [sig, handler];
    });
    return () => {
        for (const [sig, handler] of handlers)
            process.off(sig, handler);
    };
}
/**
 * For a job that writes under a temporary name (convert, dd): while it
 * exists, SIGINT, SIGTERM or SIGHUP remove it before exiting. Pass
 * `onTempFile` to the job; call `off` when the job has settled.
 */
export function removeTempOnInterrupt() {
    let tmp;
    const off = onInterrupt(() => {
        if (tmp === undefined)
            return;
        try {
            fs.unlinkSync(tmp);
        }
        catch {
            // Already gone.
        }
    });
    return { onTempFile: (path) => { tmp = path; }, off };
}
/** Index of the first byte where a and b differ (same length), or -1. */
export function firstDifference(a, b) {
    const n = Math.min(a.length, b.length);
    if (Buffer.from(a.buffer, a.byteOffset, n).equals(Buffer.from(b.buffer, b.byteOffset, n))) {
        return a.length === b.length ? -1 : n;
    }
    for (let i = 0; i < n; i++)
        if (a[i] !== b[i])
            return i;
    return n;
}
/** Index of the first non-zero byte, or -1. */
export function firstNonZero(buf) {
    if (isZero(buf))
        return -1;
    for (let i = 0; i < buf.length; i++)
        if (buf[i] !== 0)
            return i;
    return -1;
}
