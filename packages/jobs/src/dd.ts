/**
 * The dd job (blk dd, qemu-img dd): copies a range of an image into a new
 * image of any format. The range is qemu-img's: the input is cut to
 * `count * blockSize` bytes from its START, then `skip * blockSize` bytes are
 * dropped from the front, so the output's size is
 * `min(size, count * bs) - skip * bs` (`skip` past that end gives an empty
 * output, with qemu-img's warning). `blockSize` only sets those units: the
 * copy itself goes in large chunks, and all-zero chunks stay holes (the new
 * image reads zeros there already). The output is created in whole sectors
 * (qemu-img rounds its size up to 512 bytes; the tail reads as zeros).
 *
 * As `blk convert`, the output is written under a temporary name and renamed
 * over OUTPUT once complete and flushed: interrupted, OUTPUT is untouched.
 * OUTPUT is planned as convert plans its target (target.ts): a symlink is
 * written through, a replaced file keeps its mode and owner, a file with
 * several hard links is written in place; FIFOs, sockets, character devices
 * and directories are refused, and so are block devices (a rename would
 * replace the device node, and dd leaves zeros unwritten: blk convert writes
 * devices). OUTPUT must not be the input or one of its backing files.
 *
 * Each run is read from the layer of the input's chain that holds it (as the
 * copy engine reads), never again through the top. `signal` stops the copy
 * between chunks (BlockError `aborted`): the temporary file is removed and
 * OUTPUT is untouched.
 */
import { alignUp, BlockError, type Image } from '@blk/core/portable';
import {
  cacheVfs,
  chainFiles,
  checkAborted,
  COPY_CHUNK,
  COPY_DEPTH,
  CopyPipeline,
  createIn,
  EventLoopYielder,
  isZero,
  openIn,
  openOn,
  progressOf,
  refuseTargetInChain,
  rulesIn,
  type JobContext,
  type JobOptions,
} from './common.js';
import { planTarget, TargetWriter } from './target.js';

export interface DdOptions extends JobOptions {
  /** The input's format (probed when absent). */
  format?: string;
  /** The output's format (default raw). */
  outputFormat?: string;
  /** bs=: the unit of count and skip (default 512). */
  blockSize?: number;
  /** count=: copy at most this many blocks, counted from the input's start (qemu-img's rule). */
  count?: number;
  /** skip=: leave out this many blocks at the input's start. */
  skip?: number;
  /** -U: read an input another process is writing (force-share; its warning goes to onWarning). */
  forceShare?: boolean | undefined;
  /** See ConvertOptions.onTempFile. */
  onTempFile?: (path: string | undefined) => void;
  /** Called with qemu-img's warning when skip goes past the end (the output is then empty). */
  onWarning?: (message: string) => void;
}

export interface DdResult {
  /** Bytes copied (the output's size, before rounding up to whole sectors). */
  size: number;
}

/** The input range qemu-img dd copies: [start, end). */
export function ddRange(
  inputSize: number,
  o: Pick<DdOptions, 'blockSize' | 'count' | 'skip'>,
): {
  start: number;
  end: number;
  skipPastEnd: boolean;
} {
  const bs = o.blockSize ?? 512;
  let end = inputSize;
  if (o.count !== undefined && o.count * bs < end) end = o.count * bs;
  const start = o.skip !== undefined ? o.skip * bs : 0;
  if (start > end) return { start: end, end, skipPastEnd: true };
  return { start, end, skipPastEnd: false };
}

/** Copies the range of `input` that bs/count/skip select into a new image `output`. */
export async function ddImage(input: string, output: string, options: DdOptions): Promise<DdResult> {
  const bs = options.blockSize ?? 512;
  for (const [name, v] of [
    ['bs', bs],
    ['count', options.count],
    ['skip', options.skip],
  ] as const) {
    if (v !== undefined && (!Number.isSafeInteger(v) || v < 0)) throw new RangeError(`invalid ${name} ${v}`);
  }
  if (bs < 1) throw new RangeError('Invalid bs specified. Must be between 1 and 2147483647.');
  const vfs = cacheVfs(options.vfs, options);
  const ctx: JobContext = { registry: options.registry, vfs };
  const signal = options.signal;
  checkAborted(signal, input);
  const outFormat = options.outputFormat ?? 'raw';
  const plan = await planTarget(vfs, output);
  if (plan.device) {
    throw new BlockError(
      'special-file',
      'is a block device: dd writes only regular files (blk convert writes devices)',
      { path: output },
    );
  }
  const source = await openOn(ctx, input, {
    format: options.format,
    readOnly: true,
    backingProbe: options.backingProbe,
    ...rulesIn(options),
    forceShare: options.forceShare,
    onWarning: options.onWarning,
  });
  const target = new TargetWriter(vfs, plan, options.onTempFile);
  let out: Image | undefined;
  let pipeline: CopyPipeline<Uint8Array> | undefined;
  try {
    if (plan.exists) {
      await refuseTargetInChain(vfs, plan.path, await chainFiles(vfs, source), 'the input or one of its backing files');
      // Refuse an OUTPUT another process has open for writing before anything is created.
      await target.lock();
    }
    const { start, end, skipPastEnd } = ddRange(source.size, options);
    if (skipPastEnd) options.onWarning?.(`${input}: cannot skip to specified offset`);
    const size = end - start;
    // qemu-img creates every image in whole sectors: the tail past the copy reads as zeros.
    const createOptions = { format: outFormat, size: alignUp(size, 512) };
    // Under a temporary name with OUTPUT's mode and owner, or in place (see TargetWriter).
    const written = await target.create((path, overwrite) => createIn(ctx, path, { ...createOptions, overwrite }));
    out = await openIn(ctx, written, { format: outFormat });
    const image = out;
    const progress = progressOf(options, size);
    pipeline = new CopyPipeline(COPY_DEPTH, () => new Uint8Array(COPY_CHUNK));
    const layers = source.chain();
    const yielder = new EventLoopYielder();
    let done = 0;
    for await (const run of source.map(start, size)) {
      checkAborted(signal, input);
      const runEnd = run.start + run.length;
      if (run.depth === undefined || run.zero) {
        done += run.length;
        progress.update(done);
        continue;
      }
      // Read from the layer that holds the run, not again through the layers above it.
      const layer = layers[run.depth]!;
      for (let pos = run.start; pos < runEnd; ) {
        checkAborted(signal, input);
        const n = Math.min(COPY_CHUNK, runEnd - pos);
        const at = pos;
        await pipeline.start(async (buf) => {
          const data = buf.subarray(0, n);
          await layer.readInto(at, data);
          if (!isZero(data)) await image.write(at - start, data);
          done += n;
          progress.update(done);
        });
        pos += n;
        await yielder.yield();
      }
    }
    await pipeline.drain();
    checkAborted(signal, input);
    await out.flush();
    await out.close();
    out = undefined;
    await target.finish();
    progress.end();
    return { size };
  } catch (err) {
    await pipeline?.settle();
    await out?.close().catch(() => undefined);
    await target.abandon();
    throw err;
  } finally {
    await target.release();
    await source.close().catch(() => undefined);
  }
}
