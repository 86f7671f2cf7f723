import { backingPolicy, cacheVfs, chainFiles, checkCopyKeepsFormat, COPY_CHUNK, jobChunk, jobVfs, openOn, progressOf, refuseTargetInChain, rulesIn, } from './common.js';
import { copyImageData } from './copy-loop.js';
import { copyDepth, sparseSizeOf } from './convert.js';
import { openImage } from '../images.js';
export async function convertIntoExisting(src, dst, options) {
    if (options.backing !== undefined || options.backingFormat !== undefined) {
        throw new RangeError('-B cannot be used with -n: the existing target keeps its own backing file (blk rebase changes it)');
    }
    if (options.preallocation !== undefined || Object.keys(options.driverOptions ?? {}).length > 0) {
        throw new RangeError('-o has no effect when skipping image creation');
    }
    const vfs = cacheVfs(jobVfs(options), options);
    const chunk = jobChunk(options, COPY_CHUNK);
    const sparse = sparseSizeOf(options);
    const depth = copyDepth(options);
    const source = await openOn(vfs, src, {
        format: options.format, readOnly: true, backingProbe: options.backingProbe, ...rulesIn(options),
    });
    let out;
    try {
        // DST's own chain (it may be an overlay) opens under the user's backing rules, as SRC's does.
        const openOptions = {
            vfs, readOnly: false, backing: backingPolicy({ backingProbe: options.backingProbe, ...rulesIn(options) }),
        };
        if (options.outputFormat !== undefined)
            openOptions.format = options.outputFormat;
        // DST must be none of the files read (by device and inode: no symlink or hard link hides it).
        await refuseTargetInChain(vfs, dst, await chainFiles(vfs, source), 'a source of this convert');
        out = await openImage(dst, openOptions);
        if (out.size < source.size) {
            throw new Error(`${dst}: output file is smaller than input file (${out.size} < ${source.size} bytes)`);
        }
        // A target probed as raw is guarded: refuse, before anything is written, a copy whose first or last
        // bytes would make it probe as another format (the guard would otherwise stop the copy half-way).
        await checkCopyKeepsFormat(out, source, [{ start: 0, length: source.size }]);
        const progress = progressOf(options, source.size);
        await copyImageData(source, out, {
            chunk,
            depth,
            sparseSize: sparse,
            against: options.targetIsZero ? undefined : out,
            writeAll: sparse === 0,
            outOfOrder: options.outOfOrder,
            onProgress: (done) => progress.update(done),
        });
        await out.flush();
        await out.close();
        out = undefined;
        progress.end();
        return { size: source.size, tempPath: undefined, target: dst, method: 'in-place' };
    }
    finally {
        await out?.close().catch(() => undefined);
        await source.close().catch(() => undefined);
    }
}
