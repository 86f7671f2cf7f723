/**
 * The convert job (blk convert, qemu-img convert with one source): copies an
 * image into a new one of any format, sparse, written under a temporary name
 * (`DST.tmp-XXXXXXXX`) and renamed over DST only once everything is written
 * and flushed. Interrupted at any point, DST is untouched; a failure (or an
 * abort through `signal`) removes the temporary file (a killed process can
 * leave it behind: see `onTempFile`).
 *
 * What DST is decides how it is written (see target.ts): a symlink is
 * followed (the temporary file goes beside its target); a replaced file keeps
 * its mode and owner; a file with several hard links and a block device are
 * written in place, as qemu-img writes every target, because a rename would
 * split the links or replace the device node. Other node types are refused.
 * A DST that is one of the files the job reads (the source's chain, the -B
 * chain) is refused, and an existing DST is locked before anything is written.
 *
 * Every file-system action goes through the job's Vfs, and formats come from
 * its registry (syncing DST's directory after the rename is the host's
 * business: the blk command does it).
 */
import { BlockError, isBlockError, type Image, type PreallocationMode } from '@blk/core/portable';
import {
  backingPolicy,
  cacheVfs,
  chainFiles,
  checkAborted,
  COPY_CHUNK,
  COPY_DEPTH,
  createIn,
  jobChunk,
  openIn,
  openNamedBacking,
  openOn,
  progressOf,
  refuseTargetInChain,
  resolveBackingArg,
  type JobContext,
  type JobOptions,
} from './common.js';
import { planTarget, TargetWriter } from './target.js';
import { copyImageData } from './copy.js';
import { convertIntoExisting } from './convert-existing.js';

export interface ConvertOptions extends JobOptions {
  /** The source's format (probed when absent). */
  format?: string | undefined;
  /** The output's format (default raw). */
  outputFormat?: string | undefined;
  /** Options for the output format's driver (e.g. `{ variant: 'v2-qemu-lp64' }`). */
  driverOptions?: Record<string, unknown> | undefined;
  /** Space to reserve in the output (qemu-img convert -o preallocation=). */
  preallocation?: PreallocationMode | undefined;
  /**
   * Make the output an overlay on this file (a relative name is relative to
   * DST's directory); only data that differs from it is written.
   */
  backing?: string | undefined;
  /** Format of `backing` (default raw); recorded in the output when given. */
  backingFormat?: string | undefined;
  /** Format of the source's backing file (cow records none; default: recorded, else raw). */
  sourceBackingFormat?: string | undefined;
  /** Read the source as it was at this internal snapshot (qemu-img convert -l; qcow2). */
  sourceSnapshot?: string | undefined;
  /** qemu-img convert -c: the output's clusters are stored compressed (a format that can: qcow2). */
  compress?: boolean | undefined;
  /** Read the source even while another process writes it (-U, force-share; no conflicting lock). */
  forceShare?: boolean | undefined;
  /** Where warnings go (force-share seeing a writer). */
  onWarning?: ((message: string) => void) | undefined;
  /**
   * Aligned all-zero runs at least this long become holes (bytes, a multiple
   * of 512 up to 16 MiB; default 4096); 0 writes every byte.
   */
  sparseSize?: number | undefined;
  /**
   * For a host that removes the temporary file when the process is
   * interrupted (the blk command's signal handlers): called with its name
   * right before the job creates it, and with undefined once it has been
   * renamed into place or removed.
   */
  onTempFile?: ((path: string | undefined) => void) | undefined;
  /**
   * -n: DST exists already; write into it in place (no creation, no
   * temporary file). It must be at least as large as the source; its format
   * is `outputFormat` when given, else probed. See convert-existing.ts.
   */
  existingTarget?: boolean | undefined;
  /** --target-is-zero (with existingTarget): DST reads as zeros already, so runs of zeros are not written. */
  targetIsZero?: boolean | undefined;
  /** -m: chunks in flight, 1 to 16 (default 4). */
  parallel?: number | undefined;
  /** -W: let chunks be written out of order (default: each chunk writes after the previous one). */
  outOfOrder?: boolean | undefined;
}

export interface ConvertResult {
  /** Virtual size of the output (the source's). */
  size: number;
  /** The temporary name the output was written under before the rename (undefined when written in place). */
  tempPath: string | undefined;
  /** The file written: DST, or the file DST's symlinks lead to. */
  target: string;
  /** How: under a temporary name then renamed over `target`, or in place (-n, hard links, block devices). */
  method: 'rename' | 'in-place';
}

const DEFAULT_SPARSE = 4096;

/** -m: the chunks in flight, checked (qemu-img's range and message). */
export function copyDepth(options: Pick<ConvertOptions, 'parallel'>): number {
  const m = options.parallel ?? COPY_DEPTH;
  if (!Number.isSafeInteger(m) || m < 1 || m > 16) {
    throw new RangeError('Invalid number of coroutines. Allowed number of coroutines is between 1 and 16');
  }
  return m;
}

/** -S: checked. */
export function sparseSizeOf(options: Pick<ConvertOptions, 'sparseSize'>): number {
  const sparse = options.sparseSize ?? DEFAULT_SPARSE;
  if (!Number.isSafeInteger(sparse) || sparse < 0 || sparse % 512 !== 0 || sparse > 16 * 1024 * 1024) {
    throw new RangeError(`invalid sparse size ${sparse}: use a multiple of 512 up to 16M (0 writes every byte)`);
  }
  return sparse;
}

export { tempNameFor } from './target.js';

/** Converts `src` into a new image `dst` (replacing it atomically when it exists). */
export async function convertImage(src: string, dst: string, options: ConvertOptions): Promise<ConvertResult> {
  if (options.compress && (options.existingTarget || options.backing !== undefined)) {
    throw new RangeError('compressed output (-c) is not supported with -n or -B');
  }
  if (options.existingTarget) return convertIntoExisting(src, dst, options);
  if (options.targetIsZero) throw new RangeError('--target-is-zero requires use of -n flag');
  const vfs = cacheVfs(options.vfs, options);
  const ctx: JobContext = { registry: options.registry, vfs };
  const chunk = jobChunk(options, COPY_CHUNK);
  const outFormat = options.outputFormat ?? 'raw';
  const sparse = sparseSizeOf(options);
  const depth = copyDepth(options);
  const backingArg = options.backing;
  const backingFormat = options.backingFormat;
  if (backingFormat !== undefined && backingArg === undefined) {
    throw new Error('a backing format needs a backing file');
  }
  checkAborted(options.signal, src);

  const plan = await planTarget(vfs, dst);
  const source = await openOn(ctx, src, {
    format: options.format,
    readOnly: true,
    backingProbe: options.backingProbe,
    backingFormat: options.sourceBackingFormat,
    forceShare: options.forceShare,
    onWarning: options.onWarning,
    driverOptions: options.sourceSnapshot !== undefined ? { snapshot: options.sourceSnapshot } : undefined,
    backingDirs: options.backingDirs,
    forbidBacking: options.forbidBacking,
    approve: options.approve,
    allowOrigins: options.allowOrigins,
    backingDevices: options.backingDevices,
  });
  let backing: Image | undefined;
  let out: Image | undefined;
  const target = new TargetWriter(vfs, plan, options.onTempFile);
  try {
    let backingPath: string | undefined;
    if (backingArg !== undefined) {
      backingPath = resolveBackingArg(vfs, dst, backingArg);
      backing = await openNamedBacking(ctx, backingPath, backingFormat, options);
    }
    // DST must be none of the files read: writing it would destroy the data being copied,
    // or (-B DST) make DST an overlay of itself.
    const read = new Map([...(await chainFiles(vfs, source)), ...(await chainFiles(vfs, backing))]);
    if (plan.exists) await refuseTargetInChain(vfs, plan.path, read, 'a source or backing file of this convert');
    // Refuse a DST another process has open for writing before anything is created or truncated
    // (in place, the create below takes the lock before truncating).
    await target.lock();
    const createOptions: Parameters<typeof createIn>[2] = { format: outFormat, size: source.size };
    if (backingPath !== undefined) {
      createOptions.backing = backingFormat !== undefined ? { path: backingPath, format: backingFormat } : backingPath;
    }
    if (options.driverOptions && Object.keys(options.driverOptions).length > 0) {
      createOptions.driverOptions = options.driverOptions;
    }
    if (options.preallocation !== undefined) createOptions.preallocation = options.preallocation;
    const written = await target.create((path, overwrite) => createIn(ctx, path, { ...createOptions, overwrite }));
    out = await openIn(ctx, written, {
      format: outFormat,
      // Without -O the output is raw by default: guarded, so the guest's first and last bytes cannot
      // make the new file probe as another format (an overlay naming a host file, say).
      formatAssumed: options.outputFormat === undefined,
      backing: backingPolicy({ backingFormat, backingDevices: options.backingDevices }),
    });

    const progress = progressOf(options, source.size);
    const cluster = out.capabilities.limits.clusterSize;
    if (options.compress && (out.capabilities.compress !== true || cluster === undefined)) {
      throw new BlockError('not-supported', `format ${outFormat} cannot store compressed data`, { path: dst });
    }
    await copyImageData(source, out, {
      chunk: options.compress && cluster !== undefined ? Math.ceil(chunk / cluster) * cluster : chunk,
      ...(options.compress ? { compress: true } : {}),
      depth,
      sparseSize: sparse,
      against: backing,
      // A device keeps what it held: every byte must be written, zeros too.
      // (A compressed output is a format with clusters: its holes read as zeros wherever it lies.)
      writeAll: !options.compress && ((sparse === 0 && backing === undefined) || plan.device),
      outOfOrder: options.outOfOrder,
      onProgress: (done) => progress.update(done),
      signal: options.signal,
    });
    checkAborted(options.signal, src);
    await out.flush();
    await out.close();
    out = undefined;
    const tempPath = await target.finish();
    progress.end();
    return { size: source.size, tempPath, target: plan.path, method: target.method };
  } catch (err) {
    await out?.close().catch(() => undefined);
    await target.abandon();
    if (isBlockError(err, 'probe-guard')) {
      throw new BlockError(
        'probe-guard',
        `the converted disk would probe as ${err.format ?? 'another format'} `
          + `(guest data at offset ${err.offset ?? 0}), not as the raw image it is; nothing was written: `
          + 'name the output format (-O raw) to write it anyway',
        { path: dst, offset: err.offset, format: err.format },
      );
    }
    throw err;
  } finally {
    await target.release();
    await backing?.close().catch(() => undefined);
    await source.close().catch(() => undefined);
  }
}
