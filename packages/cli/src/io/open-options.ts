/**
 * How `blk io` opens a file with the options its flags gave (open-flags.ts):
 * the host file system (through the unsafe cache with `cache.no-flush`),
 * the cache mode, the backing rules, `-U`, and for `-s` a temporary cow
 * overlay on the file, deleted when the file is closed (QEMU uses a
 * temporary qcow2); the file itself is then opened read-only.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as nodePath from 'node:path';
import { BlockError, isBlockError, type BackingPolicy, type CacheMode as CoreCacheMode, type Image } from '@blk/core';
import { backingPolicy, cacheVfs } from '../jobs/common.js';
import { createImage, hostVfs, openImage, unlockedHostVfs } from '../images.js';
import { warn } from '../errors.js';
import { printable } from '../printable.js';
import { openConflict, type IoOpenOptions } from './open-flags.js';
import { resolveFileOptions, type OptionValue } from './block-options.js';
import { WindowVfs } from './window-storage.js';
import {
  HeldFileVfs,
  holdFile,
  releaseFile,
  setHeldLock,
  stronger,
  type HeldFile,
  type HeldLock,
} from './same-file.js';
import { checkQcow2CacheOptions } from './qcow2-cache-options.js';

export type { IoOpenOptions } from './open-flags.js';

/** An open file: the image commands work on, and how to close it. */
export interface OpenedFile {
  /** The name the user gave (messages name it, also under -s). */
  name: string;
  image: Image;
  /** The options it opened with, those of a json: name and `-o` applied. */
  options: IoOpenOptions;
  /** The `-o` options given with it (reopen keeps them; a json: name's are read again from the name). */
  direct: ReadonlyMap<string, OptionValue>;
  /** `node-name`, `file.node-name`, `backing.node-name` as given (reopen may not change them). */
  nodeNames: ReadonlyMap<string, string>;
  /** A descriptor on the file's inode holding its lock (same-file.ts): reopen keeps it. */
  held?: HeldFile | undefined;
  /** Closes the image, then the held descriptor (unless reopen took it). */
  close(): Promise<void>;
}

/** Below the -s overlay: the file as the format it opened as, its backing file as -F names it (or the default). */
function snapshotPolicy(format: string, o: IoOpenOptions): BackingPolicy {
  const policy = ioBackingPolicy(o);
  const below = policy.format;
  policy.format = (ref, depth) => {
    if (depth === 1) return format;
    return typeof below === 'function' ? below(ref, depth - 1) : below;
  };
  return policy;
}

/** The backing files' policy: --backing-probe, -F or `backing.driver`, the rules, `backing: null`. */
function ioBackingPolicy(o: IoOpenOptions): BackingPolicy {
  return backingPolicy({
    backingProbe: o.backingProbe,
    backingFormat: o.backingFormat,
    ...o.rules,
    ...(o.noBacking ? { backingMode: 'ignore' as const } : {}),
  });
}

/** QEMU's objection to qcow2 cache options `given` on `image` (any other format takes none). */
function cacheOptionsProblem(image: Image, given: ReadonlyMap<string, number>): string | undefined {
  const first = given.keys().next();
  if (first.done) return undefined;
  if (image.format !== 'qcow2') return `Block format '${image.format}' does not support the option '${first.value}'`;
  const spec = image.info().formatSpecific as Record<string, unknown> | undefined;
  return checkQcow2CacheOptions(given, {
    clusterSize: image.capabilities.limits.clusterSize ?? 65536,
    size: image.size,
    extendedL2: spec?.['extended-l2'] === true,
  });
}

/** The temporary overlay's sector: cow images are whole 512-byte sectors. */
const SNAPSHOT_SECTOR = 512;

/**
 * Opens `name` (a path, or a json: filename) with the flags `given` and the `-o` options `direct`
 * (which win over a json: name's; -f counts as a direct `driver`).
 */
export async function openIoFile(
  name: string,
  given: IoOpenOptions,
  direct: ReadonlyMap<string, OptionValue> = new Map(),
  sameFile?: HeldFile,
): Promise<OpenedFile> {
  let held = sameFile;
  const before = sameFile?.lock;
  try {
    return await openIoFileAs(name, given, direct, (path) => (held ??= holdFile(path)));
  } catch (err) {
    // A descriptor taken here is ours to drop; the caller's (`sameFile`) gets its lock back.
    if (held !== sameFile) releaseFile(held);
    else if (sameFile && before !== undefined) {
      try {
        setHeldLock(sameFile, before); // back to the lock it had: a downgrade, or no change
      } catch {
        // The restore's open then reports the lock it cannot have.
      }
    }
    throw err;
  }
}

/** The lock an open with `o` needs: a writer's, a reader's, none for a read-only force-share one. */
function lockFor(o: IoOpenOptions): HeldLock {
  return !o.readOnly ? 'exclusive' : o.forceShare ? 'none' : 'shared';
}

async function openIoFileAs(
  name: string,
  given: IoOpenOptions,
  direct: ReadonlyMap<string, OptionValue>,
  hold: (path: string) => HeldFile | undefined,
): Promise<OpenedFile> {
  const o: IoOpenOptions = { ...given, cache: { ...given.cache } };
  const merged = new Map(direct);
  if (o.format !== undefined && !merged.has('driver')) merged.set('driver', o.format);
  const resolved = resolveFileOptions(name, merged, o);
  if (typeof resolved === 'string') throw new BlockError('invalid-argument', resolved, { path: name });
  const { path, extras } = resolved;
  const conflict = openConflict(o);
  if (conflict !== undefined) throw new Error(conflict);
  // The file's lock is taken on the held descriptor before the image opens (a stronger one than
  // it holds now; a weaker one once the image is open: reopen -w to -r never lets it go).
  const held = o.snapshot ? undefined : hold(path);
  const want = lockFor(o);
  if (held && stronger(want, held.lock)) setHeldLock(held, want);
  const host0 = held ? new HeldFileVfs(hostVfs(), unlockedHostVfs(), path, held) : hostVfs();
  const host = o.cache.noFlush ? cacheVfs(host0, { cache: 'unsafe' }) : host0;
  const vfs = extras.window ? new WindowVfs(host, path, extras.window) : host;
  const opened = async (image: Image): Promise<OpenedFile> => {
    const problem = cacheOptionsProblem(image, extras.qcow2Cache);
    if (problem !== undefined) {
      await image.close();
      throw new BlockError('invalid-argument', problem, { path: name });
    }
    // An image that opened read-only of its own accord (a corrupt qcow2) needs only a reader's lock.
    if (held) setHeldLock(held, image.readOnly && want === 'exclusive' ? 'shared' : want);
    const file: OpenedFile = {
      name,
      image,
      options: o,
      direct,
      nodeNames: extras.nodeNames,
      held,
      close: async () => {
        try {
          await image.close();
        } finally {
          releaseFile(file.held);
          file.held = undefined;
        }
      },
    };
    return file;
  };
  const driverOptions = o.lazyRefcounts === undefined ? undefined : { 'lazy-refcounts': o.lazyRefcounts };
  const cache: CoreCacheMode = o.cache.noFlush ? 'unsafe' : o.cache.writethrough ? 'writethrough' : 'writeback';
  // forceShare: the -U open option of @blk/images (shared-lock semantics are its business).
  const base: Parameters<typeof openImage>[1] & { forceShare?: boolean } = {
    vfs,
    cache,
    backing: ioBackingPolicy(o),
    ...(driverOptions ? { driverOptions } : {}),
    onWarning: warn,
    // A dirty qcow2 image opened writable is repaired first; qemu-io prints the repair's lines bare.
    onRepair: (line) => process.stderr.write(`${printable(line)}\n`),
  };
  if (o.forceShare) base.forceShare = true;
  if (!o.snapshot) {
    const image = await openImage(path, {
      ...base,
      readOnly: o.readOnly,
      ...(o.format !== undefined ? { format: o.format } : {}),
    });
    return opened(image);
  }
  // -s: the file opens read-only under a throw-away overlay.
  if (extras.window) {
    throw new BlockError('not-supported', "-s with raw's offset or size options is not supported", { path: name });
  }
  const below = await openImage(path, {
    ...base,
    readOnly: true,
    ...(o.format !== undefined ? { format: o.format } : {}),
  });
  const format = below.format;
  const size = below.size;
  await below.close();
  if (size % SNAPSHOT_SECTOR !== 0) {
    throw new BlockError(
      'not-supported',
      `-s needs a size that is a multiple of ${SNAPSHOT_SECTOR} bytes (the temporary `
        + `overlay is a cow image); this image has ${size}`,
      { path: name },
    );
  }
  const dir = fs.mkdtempSync(nodePath.join(os.tmpdir(), 'blk-io-snapshot-'));
  try {
    const overlay = nodePath.join(dir, 'snapshot.cow');
    // QEMU's layout: it records no backing size to check (a raw file of 1000 bytes is a 1024-byte disk).
    await createImage(overlay, {
      format: 'cow',
      backing: { path: nodePath.resolve(path), format },
      vfs,
      driverOptions: { variant: 'v2-qemu-lp64' },
    });
    const { driverOptions: _top, ...overlayBase } = base;
    const image = await openImage(overlay, {
      ...overlayBase,
      format: 'cow',
      readOnly: o.readOnly,
      backing: snapshotPolicy(format, o),
    });
    return opened(image);
  } catch (err) {
    // The overlay is ours, not the user's: say which file the snapshot was for.
    const detail = isBlockError(err) ? err.detail : err instanceof Error ? err.message : String(err);
    throw new BlockError(isBlockError(err) ? err.kind : 'io', `cannot make the -s overlay: ${detail}`, {
      path: name,
      cause: err,
    });
  } finally {
    // The open descriptor keeps the overlay alive until close; nothing is left behind, even after kill -9.
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
