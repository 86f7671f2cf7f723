/**
 * The convert job (blk convert, qemu-img convert with one source): copies an
 * image into a new one of any format, sparse, written under a temporary name
 * (`DST.tmp-XXXXXXXX`) and renamed over DST only once everything is written
 * and flushed. Interrupted at any point, DST is untouched; a failure removes
 * the temporary file (a killed process can leave it behind).
 *
 * What DST is decides how it is written (see target.ts): a symlink is
 * followed (the temporary file goes beside its target); a replaced file keeps
 * its mode and owner; a file with several hard links and a block device are
 * written in place, as qemu-img writes every target, because a rename would
 * split the links or replace the device node. Other node types are refused.
 * A DST that is one of the files the job reads (the source's chain, the -B
 * chain) is refused, and an existing DST is locked before anything is written.
 *
 * Every file-system action goes through the job's Vfs (syncing DST's
 * directory after the rename is the host's business: the blk command does it).
 */
import { BlockError, isBlockError, } from '@blk/core';
import { cacheVfs, chainFiles, COPY_CHUNK, COPY_DEPTH, jobChunk, jobVfs, openNamedBacking, openOn, progressOf, refuseTargetInChain, resolveBackingArg, backingPolicy, } from './common.js';
import { planTarget, TargetWriter } from './target.js';
import { copyImageData } from './copy-loop.js';
import { convertIntoExisting } from './convert-existing.js';
import { createImage, openImage } from '../images.js';
const DEFAULT_SPARSE = 4096;
/** -m: the chunks in flight, checked (qemu-img's range and message). */
export function copyDepth(options) {
    const m = options.parallel ?? COPY_DEPTH;
    if (!Number.isSafeInteger(m) || m < 1 || m > 16) {
        throw new RangeError('Invalid number of coroutines. Allowed number of coroutines is between 1 and 16');
    }
    return m;
}
/** -S: checked. */
export function sparseSizeOf(options) {
    const sparse = options.sparseSize ?? DEFAULT_SPARSE;
    if (!Number.isSafeInteger(sparse) || sparse < 0 || sparse % 512 !== 0 || sparse > 16 * 1024 * 1024) {
        throw new RangeError(`invalid sparse size ${sparse}: use a multiple of 512 up to 16M (0 writes every byte)`);
    }
    return sparse;
}
export { tempNameFor } from './target.js';
/** Converts `src` into a new image `dst` (replacing it atomically when it exists). */
export async function convertImage(src, dst, options = {}) {
    if (options.existingTarget)
        return convertIntoExisting(src, dst, options);
    if (options.targetIsZero)
        throw new RangeError('--target-is-zero requires use of -n flag');
    const vfs = cacheVfs(jobVfs(options), options);
    const chunk = jobChunk(options, COPY_CHUNK);
    const outFormat = options.outputFormat ?? 'raw';
    const sparse = sparseSizeOf(options);
    const depth = copyDepth(options);
    const backingArg = options.backing;
    const backingFormat = options.backingFormat;
    if (backingFormat !== undefined && backingArg === undefined) {
        throw new Error('a backing format needs a backing file');
    }
    const plan = await planTarget(vfs, dst);
    const source = await openOn(vfs, src, {
        format: options.format, readOnly: true, backingProbe: options.backingProbe, backingFormat: options.sourceBackingFormat,
        forceShare: options.forceShare, onWarning: options.onWarning,
        backingDirs: options.backingDirs, forbidBacking: options.forbidBacking, approve: options.approve,
        backingDevices: options.backingDevices,
    });
    let backing;
    let out;
    const target = new TargetWriter(vfs, plan, options.onTempFile);
    try {
        let backingPath;
        if (backingArg !== undefined) {
            backingPath = resolveBackingArg(vfs, dst, backingArg);
            backing = await openNamedBacking(vfs, backingPath, backingFormat, options);
        }
        // DST must be none of the files read: writing it would destroy the data being copied,
        // or (-B DST) make DST an overlay of itself.
        const read = new Map([...await chainFiles(vfs, source), ...await chainFiles(vfs, backing)]);
        if (plan.exists)
            await refuseTargetInChain(vfs, plan.path, read, 'a source or backing file of this convert');
        // Refuse a DST another process has open for writing before anything is created or truncated
        // (in place, the create below takes the lock before truncating).
        await target.lock();
        const createOptions = { vfs, format: outFormat, size: source.size };
        if (backingPath !== undefined) {
            createOptions.backing = backingFormat !== undefined ? { path: backingPath, format: backingFormat } : backingPath;
        }
        if (options.driverOptions && Object.keys(options.driverOptions).length > 0) {
            createOptions.driverOptions = options.driverOptions;
        }
        if (options.preallocation !== undefined)
            createOptions.preallocation = options.preallocation;
        const written = await target.create((path, overwrite) => createImage(path, { ...createOptions, overwrite }));
        out = await openImage(written, {
            vfs,
            format: outFormat,
            // Without -O the output is raw by default: guarded, so the guest's first and last bytes cannot
            // make the new file probe as another format (an overlay naming a host file, say).
            formatAssumed: options.outputFormat === undefined,
            backing: backingPolicy({ backingFormat }),
        });
        const progress = progressOf(options, source.size);
        await copyImageData(source, out, {
            chunk,
            depth,
            sparseSize: sparse,
            against: backing,
            // A device keeps what it held: every byte must be written, zeros too.
            writeAll: (sparse === 0 && backing === undefined) || plan.device,
            outOfOrder: options.outOfOrder,
            onProgress: (done) => progress.update(done),
        });
        await out.flush();
        await out.close();
        out = undefined;
        const tempPath = await target.finish();
        progress.end();
        return { size: source.size, tempPath, target: plan.path, method: target.method };
    }
    catch (err) {
        await out?.close().catch(() => undefined);
        await target.abandon();
        if (isBlockError(err, 'probe-guard')) {
            throw new BlockError('probe-guard', `the converted disk would probe as ${err.format ?? 'another format'} `
                + `(guest data at offset ${err.offset ?? 0}), not as the raw image it is; nothing was written: `
                + 'name the output format (-O raw) to write it anyway', { path: dst, offset: err.offset, format: err.format });
        }
        throw err;
    }
    finally {
        await target.release();
        await backing?.close().catch(() => undefined);
        await source.close().catch(() => undefined);
    }
}
