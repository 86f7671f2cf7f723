/**
 * convert -n (qemu-img convert -n): copies an image into an EXISTING image,
 * in place. Nothing is created or renamed; DST keeps its format, size,
 * backing file and whatever lies past the source's end. DST must be at least
 * as large as the source (qemu-img's rule).
 *
 * DST is not assumed to read as zeros (qemu-img writes zeros over it unless
 * --target-is-zero): where the source reads zeros, zeros are written unless
 * DST reads zeros there already, and elsewhere only granules that differ
 * from DST's current contents are written, so running the same convert
 * again writes nothing. With `targetIsZero` the caller vouches that DST reads
 * as zeros: zero runs are skipped as for a new image.
 *
 * DST's format: `outputFormat` when given, else probed from its content (a
 * raw guess cannot then be turned into another format by the data written:
 * see openImage's probe guard). qemu-img opens it as raw unless -O says
 * otherwise, which writes guest data over another format's header.
 *
 * Not atomic: interrupted (or aborted through `signal`), DST holds part of
 * the copy (with ordered writes, the default, a front part); running it
 * again finishes it.
 */
import type { Image } from '@blk/core/portable';
import {
  backingPolicy,
  cacheVfs,
  chainFiles,
  checkAborted,
  checkCopyKeepsFormat,
  COPY_CHUNK,
  jobChunk,
  openIn,
  openOn,
  progressOf,
  refuseTargetInChain,
  rulesIn,
  type JobContext,
} from './common.js';
import { copyImageData } from './copy.js';
import { copyDepth, sparseSizeOf, type ConvertOptions, type ConvertResult } from './convert.js';

export async function convertIntoExisting(src: string, dst: string, options: ConvertOptions): Promise<ConvertResult> {
  if (options.backing !== undefined || options.backingFormat !== undefined) {
    throw new RangeError(
      '-B cannot be used with -n: the existing target keeps its own backing file (blk rebase changes it)',
    );
  }
  if (options.preallocation !== undefined || Object.keys(options.driverOptions ?? {}).length > 0) {
    throw new RangeError('-o has no effect when skipping image creation');
  }
  const vfs = cacheVfs(options.vfs, options);
  const ctx: JobContext = { registry: options.registry, vfs };
  const chunk = jobChunk(options, COPY_CHUNK);
  const sparse = sparseSizeOf(options);
  const depth = copyDepth(options);
  checkAborted(options.signal, src);
  const source = await openOn(ctx, src, {
    format: options.format,
    readOnly: true,
    backingProbe: options.backingProbe,
    ...rulesIn(options),
  });
  let out: Image | undefined;
  try {
    // DST's own chain (it may be an overlay) opens under the user's backing rules, as SRC's does.
    const openOptions: Parameters<typeof openIn>[2] = {
      readOnly: false,
      backing: backingPolicy({ backingProbe: options.backingProbe, ...rulesIn(options) }),
    };
    if (options.outputFormat !== undefined) openOptions.format = options.outputFormat;
    // DST must be none of the files read (by device and inode: no symlink or hard link hides it).
    await refuseTargetInChain(vfs, dst, await chainFiles(vfs, source), 'a source of this convert');
    out = await openIn(ctx, dst, openOptions);
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
      signal: options.signal,
    });
    await out.flush();
    await out.close();
    out = undefined;
    progress.end();
    return { size: source.size, tempPath: undefined, target: dst, method: 'in-place' };
  } finally {
    await out?.close().catch(() => undefined);
    await source.close().catch(() => undefined);
  }
}
