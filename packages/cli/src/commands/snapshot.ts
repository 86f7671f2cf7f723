/**
 * blk snapshot: qemu-img snapshot. `-l` lists an image's internal snapshots in qemu-img's table;
 * `-c NAME` creates one, `-a NAME|ID` reverts the image to one, `-d NAME` deletes one, through the
 * format's `snapshot` hook (qcow2). Failures print qemu-img's words and exit 1.
 */
import * as fs from 'node:fs';
import * as nodePath from 'node:path';
import { errnoOf, isBlockError, type Image } from '@blk/core';
import { openCli, type CliOpenOptions } from '../common.js';
import { ExitError, UsageError, describeError, warn } from '../errors.js';
import { snapshotTable } from '../snapshot-table.js';

export interface SnapshotOpts {
  format?: string;
  list?: boolean;
  create?: string;
  apply?: string;
  delete?: string;
  forceShare?: boolean;
  quiet?: boolean;
}

export async function snapshot(file: string, opts: SnapshotOpts): Promise<number> {
  const actions = [opts.list, opts.create, opts.apply, opts.delete].filter((a) => a !== undefined && a !== false);
  if (actions.length > 1) throw new UsageError("Cannot mix '-l', '-a', '-c', '-d'");
  // qemu-img with no action lists.
  if (opts.create === undefined && opts.apply === undefined && opts.delete === undefined) return list(file, opts);
  // qemu-img's words: -U opens shared, which only a read-only open may.
  if (opts.forceShare) fail(`Could not open '${file}': force-share=on can only be used with read-only images`);
  const image = await openChain(file, { format: opts.format, readOnly: false, onWarning: warn });
  try {
    if (opts.create !== undefined) {
      const name = opts.create;
      await image.snapshot({ action: 'create', name: qemuName(name) }).catch((err: unknown) => {
        // qemu-img: "Could not create snapshot 'x': -95 (Operation not supported)"; the detail follows.
        const e = errnoOf(err);
        fail(`Could not create snapshot '${name}': -${e.errno} (${e.message}): ${describeError(err)}`);
      });
    } else if (opts.apply !== undefined) {
      const name = opts.apply;
      await image.snapshot({ action: 'apply', snapshot: name }).catch((err: unknown) => {
        if (isBlockError(err) && err.code === 'ENOENT' && err.field === 'snapshot') {
          fail(`Could not apply snapshot '${name}': Failed to load snapshot: No such file or directory`);
        }
        fail(`Could not apply snapshot '${name}': ${describeError(err)}`);
      });
    } else {
      const name = opts.delete!;
      if (!image.snapshottable) fail(`Could not delete snapshot '${name}': snapshot not found`);
      await image.snapshot({ action: 'delete', snapshot: name }).catch((err: unknown) => {
        if (isBlockError(err) && err.code === 'ENOENT' && err.field === 'snapshot') {
          fail(`Could not delete snapshot '${name}': snapshot not found`);
        }
        fail(`Could not delete snapshot '${name}': ${describeError(err)}`);
      });
    }
  } finally {
    await image.close();
  }
  return 0;
}

/**
 * qemu-img keeps at most 255 bytes of a new snapshot's name (QEMUSnapshotInfo.name is char[256]);
 * cut here at a character boundary, so the name stays valid UTF-8.
 */
function qemuName(name: string): string {
  const bytes = new TextEncoder().encode(name);
  if (bytes.length <= 255) return name;
  let end = 255;
  while (end > 0 && (bytes[end]! & 0xc0) === 0x80) end--;
  return new TextDecoder().decode(bytes.subarray(0, end));
}

/** One line on stderr (blk: prefix) and exit 1, as qemu-img. */
function fail(message: string): never {
  throw new ExitError(1, message);
}

async function list(file: string, opts: SnapshotOpts): Promise<number> {
  const image = await openChain(file, {
    format: opts.format,
    readOnly: true,
    forceShare: opts.forceShare,
    onWarning: warn,
  });
  try {
    // qemu-img prints nothing for an image without snapshots, or a format without any.
    const snapshots = image.info().extras?.snapshots ?? [];
    if (snapshots.length > 0) process.stdout.write(`${snapshotTable(snapshots).join('\n')}\n`);
  } finally {
    await image.close();
  }
  return 0;
}

/**
 * Opens the image with its backing chain, as qemu-img snapshot does (it has no BDRV_O_NO_BACKING):
 * an image whose backing file is missing is refused, in qemu-img's words, and left unchanged.
 */
async function openChain(file: string, o: CliOpenOptions): Promise<Image> {
  try {
    return await openCli(file, o);
  } catch (err) {
    if (isBlockError(err) && err.kind === 'backing-missing') {
      const message = await missingBackingMessage(file, o.format);
      if (message !== undefined) fail(message);
    }
    throw err;
  }
}

/**
 * qemu-img's message for a chain whose file is missing: one "Could not open backing file: " per
 * level, and the missing file named as QEMU's path_combine names it (the layer's name as given,
 * up to its last '/', then the name the layer records). Undefined when every layer is there.
 */
async function missingBackingMessage(file: string, format: string | undefined): Promise<string | undefined> {
  let name = file;
  for (let depth = 1; depth <= MAX_CHAIN; depth++) {
    const layer = await openCli(name, {
      format: depth === 1 ? format : undefined,
      readOnly: true,
      backingMode: 'ignore',
    });
    const stored = layer.info().backing?.stored;
    await layer.close();
    if (stored === undefined) return undefined;
    name = nodePath.isAbsolute(stored) ? stored : name.slice(0, name.lastIndexOf('/') + 1) + stored;
    if (!fs.existsSync(name)) {
      const levels = 'Could not open backing file: '.repeat(depth);
      return `Could not open '${file}': ${levels}Could not open '${name}': No such file or directory`;
    }
  }
  return undefined;
}

/** Chains deeper than this are the core's to refuse (chain-too-deep). */
const MAX_CHAIN = 64;
