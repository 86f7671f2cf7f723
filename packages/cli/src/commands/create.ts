/** blk create: qemu-img create. */
import * as fs from 'node:fs';
import { UsageError } from '../errors.js';
import { createImage, hostVfs, openImage, registry } from '../images.js';
import { formatOptionHelp, parseCreateOptions } from '../options.js';
import { parseSize, wholeSectors } from '../size.js';
import { resolveBackingArg } from '../common.js';
import { isRemoteUrl } from '@blk/http';

export interface CreateOpts {
  format: string;
  backing?: string;
  backingFormat?: string;
  options: string[];
  quiet?: boolean;
}

export async function create(
  fileArg: string | undefined,
  sizeArg: string | undefined,
  opts: CreateOpts,
): Promise<number> {
  const format = opts.format;
  const driver = registry.require(format, fileArg);
  if (!driver.create) throw new Error(`${fileArg ?? format}: format ${format} cannot create images`);
  const o = parseCreateOptions(format, opts.options, fileArg);
  if (o.help) {
    process.stdout.write(formatOptionHelp(format));
    return 0;
  }
  // As qemu-img: `-o help` needs no file name; everything else does.
  if (fileArg === undefined) throw new UsageError('Expecting image file name');
  const file = fileArg;
  let size = o.size;
  if (sizeArg !== undefined) {
    if (size !== undefined) throw new UsageError('the size is given both with -o size= and as an argument');
    size = parseSize(sizeArg, 'image size');
  }
  const backingArg = opts.backing ?? o.backingFile;
  if (opts.backing !== undefined && o.backingFile !== undefined) {
    throw new UsageError('the backing file is given both with -b and -o backing_file=');
  }
  const backingFormat = opts.backingFormat ?? o.backingFormat;
  if (backingFormat !== undefined && backingArg === undefined) {
    throw new UsageError('-F (backing format) needs -b (backing file)');
  }

  let backingPath: string | undefined;
  if (backingArg !== undefined) {
    if (backingArg === '') throw new UsageError('the backing file name is empty');
    backingPath = resolveBackingArg(file, backingArg);
    const remote = isRemoteUrl(backingPath);
    if (remote ? !(await hostVfs().exists(backingPath)) : !fs.existsSync(backingPath)) {
      throw new Error(`${file}: backing file ${backingPath} not found`);
    }
    // FILE is about to be emptied: it must be none of the files the new image will read through
    // (the backing file or, as far as it opens, its chain), compared by device and inode.
    // (A URL is never FILE: blk does not write URLs.)
    if (!remote && fs.existsSync(file) && (await backingChainIds(backingPath, backingFormat)).has(fileId(file))) {
      throw new UsageError(`${file}: an image cannot be its own backing file, directly or further down the chain`);
    }
    if (size === undefined) {
      // Raw only by default: a backing file carrying another format's header is refused, not sized as raw.
      const base = await openImage(backingPath, {
        format: backingFormat ?? 'raw',
        formatAssumed: backingFormat === undefined,
        readOnly: true,
        backing: { mode: 'ignore' },
      });
      size = base.size;
      await base.close();
    }
  }
  if (size === undefined) throw new UsageError(`${file}: image creation needs a size parameter`);

  if (!opts.quiet) {
    let line = `Formatting '${file}', fmt=${format} size=${size}`;
    if (backingArg !== undefined) line += ` backing_file=${backingArg}`;
    if (backingFormat !== undefined) line += ` backing_fmt=${backingFormat}`;
    for (const [k, v] of o.given) line += ` ${k}=${v}`;
    process.stdout.write(`${line}\n`);
  }

  // qemu-img rounds every size up to whole 512-byte sectors (1234 makes a 1536-byte disk); the
  // Formatting line above keeps the size as given, as qemu-img's does.
  const createOptions: Parameters<typeof createImage>[1] = { format, size: wholeSectors(size), overwrite: true };
  if (backingPath !== undefined) {
    createOptions.backing = backingFormat !== undefined ? { path: backingPath, format: backingFormat } : backingPath;
  }
  if (Object.keys(o.driverOptions).length > 0) createOptions.driverOptions = o.driverOptions;
  if (o.preallocation !== undefined) createOptions.preallocation = o.preallocation;
  await createImage(file, createOptions);
  return 0;
}

function fileId(path: string): string {
  const st = fs.statSync(path, { bigint: true });
  return `${st.dev}:${st.ino}`;
}

/** The identities of the backing file and, as far as it opens (best effort), of its own chain. */
async function backingChainIds(backingPath: string, backingFormat: string | undefined): Promise<Set<string>> {
  const ids = new Set([fileId(backingPath)]);
  const chain = await openImage(backingPath, { format: backingFormat ?? 'raw', readOnly: true }).catch(() => undefined);
  try {
    for (let layer = chain?.backing; layer; layer = layer.backing) {
      try {
        ids.add(fileId(layer.path));
      } catch {
        // Gone meanwhile: it cannot be FILE then.
      }
    }
  } finally {
    await chain?.close();
  }
  return ids;
}
