import { refuseWritableOpen } from './capabilities.js';
import { BlockError, isBlockError, retitle, type BlockErrorContext } from '../errors.js';
import { checkOffset } from '../checks.js';
import { checkCreateOptions, checkOpenOptions } from '../arguments.js';
import { Image } from './image.js';
import {
  DEFAULT_MAX_CHAIN_DEPTH,
  backingMismatchText,
  checkApproval,
  checkBackingNode,
  checkConfinement,
  exactBackingPath,
  gatherBackingFacts,
  resolveBackingPath,
  type BackingPolicy,
} from './backing-policy.js';
import type {
  BackingFacts,
  BackingReference,
  BackingSpec,
  CacheMode,
  DriverImage,
  DriverOpenOptions,
  OpenFileOptions,
  PreallocationMode,
  ProbedBytes,
} from '../format/driver.js';
import type { DriverRegistry } from '../format/registry.js';
import { requireWritable, type Storage, type Vfs, type VfsOpenOptions } from '../storage/storage.js';

export interface OpenImageOptions {
  /** The formats to probe among; `@blk/images` passes one with every built-in format. */
  registry: DriverRegistry;
  /** Name the format instead of probing (nothing is probed, no probe guard is set). */
  format?: string;
  /**
   * `format` is a default nobody chose (a job's "raw unless told", as for
   * backing files), not the user's word: the file is refused when it carries
   * another format's header or signature (`backing-format`), and a writable
   * image of a format whose guest data starts at offset 0 gets the probe
   * guard, as if its format had been probed.
   */
  formatAssumed?: boolean;
  /**
   * Files the caller holds open itself (a job's overlay, opened apart from
   * its chain): a backing chain that reaches one of them, by any name, is a
   * `backing-loop`, found before that file is opened again (whose lock, taken
   * by the caller, would otherwise be reported as another process's).
   */
  heldFiles?: readonly string[];
  readOnly?: boolean;
  /** Where files live (required here; `@blk/core`'s Node entry and a host supply a default). */
  vfs: Vfs;
  cache?: CacheMode;
  /** Options for the top image's driver (e.g. `{ variant: 'v2-qemu-lp64' }`). */
  driverOptions?: Record<string, unknown>;
  backing?: BackingPolicy;
  /**
   * May the image itself be a block device? Default true (the caller named
   * it). Pass false when the path came from an image (a job that opens a
   * backing file directly, such as commit, passes `backing.allowDevices`).
   */
  blockDevices?: boolean;
  /**
   * qemu-img's `-U` (force-share=on): read an image another process may be
   * writing. Every file of the chain opens without a lock that would conflict
   * with a writer's (what is read may then be inconsistent, and the Vfs warns
   * through `onWarning` when it sees a writer). Only with `readOnly`.
   */
  forceShare?: boolean;
  /** Warnings from the Vfs (see `forceShare`); a locking Vfs emits a process warning without it. */
  onWarning?: (message: string) => void;
  /** The top image is opened to be checked and repaired (see `DriverOpenOptions.forCheck`). */
  forCheck?: boolean;
  /** Hears the lines of a repair the top image's driver makes while opening (see `DriverOpenOptions.onRepair`). */
  onRepair?: (line: string) => void;
}

export interface CreateImageOptions {
  registry: DriverRegistry;
  format: string;
  /** Virtual size in bytes; defaults to the backing image's size. */
  size?: number;
  /** Backing file: its path (made absolute) and, optionally, its format (default raw). */
  backing?: string | { path: string; format?: string };
  driverOptions?: Record<string, unknown>;
  /** How much space to reserve (default `off`: a sparse file); see `PreallocationMode`. */
  preallocation?: PreallocationMode;
  /** Where files live (required here; `@blk/core`'s Node entry and a host supply a default). */
  vfs: Vfs;
  /** Replace an existing file (default: refuse with `exists`). */
  overwrite?: boolean;
}

/**
 * The portable core has no default file system: a caller names one (a
 * MemoryVfs, an HTTP one, NodeVfs), or uses a host (`createHost`) that holds
 * one. `@blk/core`'s Node entry defaults to NodeVfs.
 */
function requireVfs(vfs: Vfs | undefined, path: string): Vfs {
  if (vfs === undefined) {
    throw new BlockError(
      'invalid-argument',
      'vfs is required (the portable core has no default file system: pass one, or use a host from createHost)',
      { path, field: 'vfs' },
    );
  }
  return vfs;
}

/**
 * Opens an image: probes its format (or takes the named one), then opens its
 * backing chain under the backing policy, each backing file read-only.
 */
export async function openImage(path: string, options: OpenImageOptions): Promise<Image> {
  checkOpenOptions(options, path);
  const vfs = requireVfs(options.vfs, path);
  const absolute = vfs.resolve(vfs.cwd(), path);
  if (options.forceShare && !options.readOnly) {
    // qemu's own words for the same mistake.
    throw new BlockError('invalid-argument', 'force-share=on can only be used with read-only images', { path });
  }
  const seen = new Set<string>();
  for (const held of options.heldFiles ?? []) {
    for (const key of await identityKeys(vfs, vfs.resolve(vfs.cwd(), held))) seen.add(key);
  }
  return openLayer(vfs, path, absolute, options, {
    depth: 0,
    readOnly: options.readOnly ?? false,
    format: options.format,
    seen,
    rawByDefault: options.format !== undefined && options.formatAssumed === true,
  });
}

interface LayerContext {
  depth: number;
  readOnly: boolean;
  format: string | undefined;
  seen: Set<string>;
  /**
   * The format is only a default nobody named (raw for a backing file under
   * the default policy, or `formatAssumed`): refuse a disguised file, guard writes.
   */
  rawByDefault?: boolean;
}

/** A file's keys for loop detection: by real path and by identity (a hard link, or a bind mount, is the same file under another real path). */
async function identityKeys(vfs: Vfs, absolute: string): Promise<string[]> {
  const real = await vfs.realpath(absolute).catch(() => absolute);
  const id = (await vfs.stat(absolute).catch(() => undefined))?.id;
  return id !== undefined ? [real, `id:${id}`] : [real];
}

async function openLayer(
  vfs: Vfs,
  displayPath: string,
  absolute: string,
  options: OpenImageOptions,
  ctx: LayerContext,
): Promise<Image> {
  const policy = options.backing ?? {};
  const keys = await identityKeys(vfs, absolute);
  if (keys.some((key) => ctx.seen.has(key))) {
    throw new BlockError('backing-loop', `backing chain loops back to ${absolute}`, { path: displayPath });
  }
  for (const key of keys) ctx.seen.add(key);
  // The caller named the top image and may mean a device; a backing path comes from an image.
  const blockDevices = ctx.depth === 0 ? options.blockDevices !== false : policy.allowDevices === true;
  const storage = await vfs
    .open(absolute, { ...openFlags(ctx.readOnly, options), blockDevices })
    .catch((err: unknown) => {
      throw retitle(err, displayPath);
    });
  if (!ctx.readOnly && !storage.capabilities.write) {
    // Refused up front (not at the first write): a storage that cannot write (HTTP, a read-only medium).
    await storage.close().catch(() => undefined);
    throw new BlockError('read-only', 'the storage cannot be written; open the image read-only', {
      path: displayPath,
      code: 'EROFS',
    });
  }
  let driverImage: DriverImage | undefined;
  let backing: Image | undefined;
  try {
    const registry = options.registry;
    let probed = false;
    let driverName = ctx.format;
    // What probing (or the disguise check) read: handed to the driver, which need not read it again.
    let bytes: ProbedBytes | undefined;
    if (driverName === undefined) {
      try {
        bytes = await registry.readProbe(storage);
        driverName = registry.identify(bytes, displayPath, storage.path).driver.name;
      } catch (err) {
        throw retitle(err, displayPath);
      }
      probed = true;
    }
    const driver = registry.require(driverName, displayPath);
    // depth 0: a file opened on its own with `formatAssumed` (a backing file named to createImage, say).
    if (ctx.rawByDefault) {
      bytes = await registry.readProbe(storage).catch(() => undefined);
      if (bytes) refuseDisguisedBacking(bytes, registry, displayPath, ctx.depth > 0 ? ctx.depth : undefined);
    }
    const openOptions: DriverOpenOptions = {
      readOnly: ctx.readOnly,
      cache: options.cache ?? 'writeback',
      driverOptions: ctx.depth === 0 ? options.driverOptions : undefined,
      ...(ctx.depth === 0 && options.forCheck === true ? { forCheck: true } : {}),
      ...(ctx.depth === 0 && options.onRepair !== undefined ? { onRepair: options.onRepair } : {}),
      openFile: (name, o) => openNamedFile(vfs, displayPath, absolute, name, o, options, ctx.readOnly),
    };
    if (bytes) openOptions.probe = bytes;
    driverImage = await driver.open(storage, openOptions);
    // A format that cannot write is refused for a writable open here, before its backing chain is opened.
    refuseWritableOpen(driverImage, { path: displayPath, readOnly: ctx.readOnly });
    const ref = driverImage.backing;
    let backingPath: string | undefined;
    if (ref) {
      const mode = policy.mode ?? 'open';
      if (mode === 'forbid') {
        throw new BlockError(
          'backing-forbidden',
          `image names backing file '${ref.path}' and backing files are forbidden`,
          { path: displayPath },
        );
      }
      if (ctx.depth === 0 && policy.overridePath !== undefined) {
        backingPath = vfs.resolve(vfs.cwd(), policy.overridePath);
      } else if (ref.rawPath === undefined || mode === 'open') {
        // A path that is not valid UTF-8 has no resolved form: refused when it would be opened.
        backingPath = resolveBackingPath(vfs, absolute, exactBackingPath(ref, displayPath));
      }
      if (mode === 'open' && backingPath !== undefined) {
        backing = await openBacking(vfs, displayPath, backingPath, ref, options, ctx);
        await checkBackingMatch(vfs, displayPath, backingPath, ref, backing, driverImage, policy, ctx.readOnly);
      }
    }
    // Only a format whose guest data starts at file offset 0 (raw) lets guest writes
    // decide how the file probes; only a guessed format needs guarding against that.
    // A format nobody named (rawByDefault) is as much a guess as a probed one.
    const guard =
      (probed || ctx.rawByDefault === true) && !ctx.readOnly && driver.guestDataAtFileStart === true
        ? { registry, window: registry.probeWindow(), tail: registry.probeTail() }
        : undefined;
    return new Image({
      path: displayPath,
      driverImage,
      readOnly: ctx.readOnly,
      backing,
      backingPath,
      probeGuard: guard,
      backingIgnored: ref !== undefined && backing === undefined,
    });
  } catch (err) {
    await backing?.close().catch(() => undefined);
    if (driverImage) await driverImage.close().catch(() => undefined);
    else await storage.close().catch(() => undefined);
    throw err;
  }
}

/**
 * `DriverOpenOptions.openFile`: a file other than a backing file that an
 * image names (qcow2's external data file), opened under the backing
 * policy as a backing file is: refused under `forbid`, confined to
 * `allowedDirs`, asked of `approve`, no device unless `allowDevices`, never
 * a FIFO, socket or directory. A relative name is resolved against the
 * image's directory. Never writable under a read-only image.
 */
async function openNamedFile(
  vfs: Vfs,
  imagePath: string,
  imageAbsolute: string,
  name: string,
  o: OpenFileOptions,
  options: OpenImageOptions,
  imageReadOnly: boolean,
): Promise<Storage> {
  const policy = options.backing ?? {};
  const role = typeof o?.role === 'string' && o.role !== '' ? o.role : 'file';
  if (typeof name !== 'string') {
    throw new BlockError('invalid-argument', `${role} name must be a string`, { path: imagePath, field: role });
  }
  if (policy.mode === 'forbid') {
    throw new BlockError('backing-forbidden', `image names ${role} '${name}' and files named by images are forbidden`, {
      path: imagePath,
      field: role,
    });
  }
  const path = resolveBackingPath(vfs, imageAbsolute, name);
  await checkConfinement(vfs, policy, imagePath, path);
  await checkApproval(policy, imagePath, path);
  const st = await vfs.stat(path).catch((err: unknown) => {
    if (isBlockError(err) && err.code === 'ENOENT') return undefined;
    throw err;
  });
  if (!st) throw new BlockError('backing-missing', `${role} ${path} not found`, { path: imagePath, field: role });
  checkBackingNode(policy, imagePath, path, st);
  const readOnly = imageReadOnly || o?.readOnly === true;
  return vfs
    .open(path, { ...openFlags(readOnly, options), blockDevices: policy.allowDevices === true })
    .catch((err: unknown) => {
      throw retitle(err, path);
    });
}

/** How a layer's file is opened: read-only or not, and shared with writers when asked (forceShare). */
function openFlags(readOnly: boolean, options: OpenImageOptions): VfsOpenOptions {
  const flags: VfsOpenOptions = { readOnly };
  if (options.forceShare && readOnly) flags.forceShare = true;
  if (options.onWarning) flags.onWarning = options.onWarning;
  return flags;
}

async function openBacking(
  vfs: Vfs,
  overlayPath: string,
  backingPath: string,
  ref: BackingReference,
  options: OpenImageOptions,
  ctx: LayerContext,
): Promise<Image> {
  const policy = options.backing ?? {};
  const depth = ctx.depth + 1;
  const maxDepth = policy.maxDepth ?? DEFAULT_MAX_CHAIN_DEPTH;
  if (depth > maxDepth) {
    throw new BlockError('chain-too-deep', `backing chain is deeper than the limit of ${maxDepth} levels`, {
      path: overlayPath,
    });
  }
  await checkConfinement(vfs, policy, overlayPath, backingPath);
  await checkApproval(policy, overlayPath, backingPath);
  const st = await vfs.stat(backingPath).catch((err: unknown) => {
    // Only "no such file" means missing; any other failure (EIO, EACCES) stays an I/O error.
    if (isBlockError(err) && err.code === 'ENOENT') return undefined;
    throw err;
  });
  if (!st) {
    throw new BlockError('backing-missing', `backing file ${backingPath} not found`, { path: overlayPath });
  }
  if (st.isDirectory) {
    throw new BlockError('backing-missing', `backing file ${backingPath} is a directory`, { path: overlayPath });
  }
  // Refused before any open (a FIFO would block it); the open checks the node again (it may be swapped meanwhile).
  checkBackingNode(policy, overlayPath, backingPath, st);
  const chosen = typeof policy.format === 'function' ? policy.format(ref, depth) : policy.format;
  if (chosen !== undefined && (typeof chosen !== 'string' || chosen === '')) {
    throw new BlockError(
      'invalid-argument',
      `backing.format returned ${typeof chosen === 'string' ? 'an empty string' : `a ${typeof chosen}`} for depth ${depth}; `
        + "return a format name, 'probe', or undefined for the default",
      { path: overlayPath, field: 'backing.format' },
    );
  }
  const format = chosen === 'probe' ? undefined : (chosen ?? ref.format ?? 'raw');
  const rawByDefault = chosen === undefined && ref.format === undefined;
  return openLayer(vfs, backingPath, backingPath, options, { ...ctx, depth, readOnly: true, format, rawByDefault });
}

/**
 * A backing file opens as raw unless someone names its format, so that an
 * image's content never decides how the host reads files. The other side of
 * that rule: when such a file carries another format's header (a COW file
 * under a COW file, say), reading it as raw would show the header and bitmap
 * as disk contents, and a commit would write guest data over them. Refuse and
 * say how to name the format instead of guessing either way. `depth` is the
 * file's level in the chain being opened (undefined: a backing file named to
 * createImage without a format). The error's `format` is the format found.
 */
function refuseDisguisedBacking(
  bytes: ProbedBytes,
  registry: DriverRegistry,
  path: string,
  depth: number | undefined,
): void {
  const result = registry.recogniseBytes(bytes, path);
  const where: BlockErrorContext = { path };
  if (depth !== undefined) where.depth = depth;
  if (result?.foreign) {
    const found = result.foreign;
    throw new BlockError(
      'backing-format',
      `backing file is a ${found.format} image (${found.description}: ${found.evidence}), a format no registered driver `
        + `reads; it is not read as raw unless named: name 'raw' (backing.format 'raw') to read its bytes as a disk`,
      { ...where, format: found.format },
    );
  }
  if (result && result.driver.name !== 'raw') {
    const found = result.driver.name;
    throw new BlockError(
      'backing-format',
      `backing file looks like a ${found} image, but backing files open as raw unless their format `
        + `is named: name it (backing.format '${found}'), or name 'raw' to read it as raw`,
      { ...where, format: found },
    );
  }
}

/**
 * The open-time check of a backing file against what the overlay recorded
 * (UML's size and mtime): the driver compares (`checkBackingFacts`), the
 * core gathers the facts and applies the policy's `onMismatch`.
 */
async function checkBackingMatch(
  vfs: Vfs,
  overlayPath: string,
  backingPath: string,
  ref: BackingReference,
  backing: Image,
  top: DriverImage,
  policy: BackingPolicy,
  readOnly: boolean,
): Promise<void> {
  if (!top.checkBackingFacts) return;
  const facts = await gatherBackingFacts(vfs, backingPath, backing);
  const problems = top
    .checkBackingFacts(facts)
    .filter((c) => !c.matches)
    .map((c) => backingMismatchText(c));
  if (problems.length === 0) return;
  const mode = policy.onMismatch ?? 'refuse';
  if (mode === 'accept') return;
  if (mode === 'update') {
    if (ref.rawPath !== undefined) exactBackingPath(ref, overlayPath); // would rewrite the path with other bytes
    if (readOnly || !top.setBacking) {
      throw new BlockError(
        'backing-mismatch',
        `backing file ${backingPath}: ${problems.join('; ')}; cannot update a read-only overlay`,
        { path: overlayPath },
      );
    }
    const spec: BackingSpec = { path: ref.path, facts };
    if (ref.format !== undefined) spec.format = ref.format;
    await top.setBacking(spec);
    return;
  }
  throw new BlockError(
    'backing-mismatch',
    `backing file ${backingPath}: ${problems.join('; ')} (open with backing.onMismatch 'accept' or 'update' to proceed)`,
    { path: overlayPath },
  );
}

/**
 * Creates an image through its driver. The file must not exist (unless
 * `overwrite`); on failure nothing is left behind.
 */
export async function createImage(path: string, options: CreateImageOptions): Promise<void> {
  checkCreateOptions(options, path);
  const vfs = requireVfs(options.vfs, path);
  const driver = options.registry.require(options.format, path);
  if (!driver.create) {
    throw new BlockError('not-supported', `format ${driver.name} cannot create images`, { path });
  }
  let backing: BackingSpec | undefined;
  let virtualBackingSize: number | undefined;
  if (options.backing !== undefined) {
    const spec = typeof options.backing === 'string' ? { path: options.backing } : options.backing;
    const absolute = vfs.resolve(vfs.cwd(), spec.path);
    if (!(await vfs.exists(absolute))) {
      throw new BlockError('backing-missing', `backing file ${absolute} not found`, { path });
    }
    const format = spec.format ?? 'raw';
    // Only its size is needed: do not open its own chain (as QEMU's bdrv_img_create opens
    // the backing file with BDRV_O_NO_BACKING). Under the default policy that chain would
    // open as raw below a non-raw backing file and fail as a size mismatch.
    const image = await openImage(absolute, {
      registry: options.registry,
      vfs,
      format,
      readOnly: true,
      backing: { mode: 'ignore' },
      // Raw only by default: a backing file carrying another format's header is refused, not sized as raw.
      formatAssumed: spec.format === undefined,
    });
    let facts: BackingFacts;
    try {
      facts = await gatherBackingFacts(vfs, absolute, image);
    } finally {
      await image.close();
    }
    virtualBackingSize = image.size;
    // What of these facts the new image records is its driver's business (UML's cow: a size and an mtime).
    backing = { path: absolute, facts };
    if (spec.format !== undefined) backing.format = spec.format;
  }
  const size = options.size ?? virtualBackingSize;
  if (size === undefined) {
    throw new BlockError('invalid-argument', 'a size is needed when there is no backing file', { path });
  }
  checkOffset(size, 'size', path);
  const existed = await vfs.exists(path);
  if (existed && !options.overwrite) throw new BlockError('exists', 'file exists', { path, code: 'EEXIST' });
  // A block device is written in place, as qemu-img does (never replaced by a file, never removed,
  // never grown). Only a format whose unwritten parts need not read as zeros can live on one: raw.
  const device = existed && (await vfs.stat(path).catch(() => undefined))?.type === 'block-device';
  if (device && driver.guestDataAtFileStart !== true) {
    throw new BlockError(
      'not-supported',
      `a ${driver.name} image cannot be created on a block device (it needs a file that starts zero-filled); use raw`,
      { path },
    );
  }
  let storage: Storage | undefined;
  try {
    // The Vfs truncates only after its checks (and lock): a refused open leaves the file as it was.
    storage = await vfs.open(path, { create: true, exclusive: !options.overwrite, truncate: true, blockDevices: true });
    const target = requireWritable(storage, 'cannot create an image');
    const createOptions: Parameters<NonNullable<typeof driver.create>>[1] = { size };
    if (backing) createOptions.backing = backing;
    if (options.driverOptions) createOptions.driverOptions = options.driverOptions;
    if (options.preallocation !== undefined) createOptions.preallocation = options.preallocation;
    await driver.create(target, createOptions);
    await target.flush();
    await storage.close();
  } catch (err) {
    await storage?.close().catch(() => undefined);
    // Remove only a file this call created or truncated: when the open itself failed
    // (another writer created the file since the check above), the file is not ours.
    if (storage && !device) await vfs.remove(path).catch(() => undefined);
    throw retitle(err, path);
  }
}
