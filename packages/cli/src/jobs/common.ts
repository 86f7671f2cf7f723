/**
 * What the jobs still in the CLI (commit, rebase, dd) share: options, opening
 * images on a Vfs with the CLI's backing policy (--backing-devices defaults
 * to what the environment says), and the copy helpers of @blk/jobs. Nothing
 * here touches node:fs or node:path: every file-system action goes through a
 * Vfs.
 */
import { BlockError, checkApproval, checkBackingNode, checkConfinement, exactBackingPath, isBlockError, type BackingPolicy, type Image, type Vfs } from '@blk/core';
import type { BackingRules, BackingVerdict, CacheMode, ProgressEvent } from '@blk/jobs';
import { hostVfs, openImage } from '../images.js';
import { backingDevicesAllowed } from '../backing-devices.js';

export {
  CACHE_MODES, CHUNK, COPY_CHUNK, COPY_DEPTH, CopyPipeline, chainFiles, checkCopiesKeepFormat, checkCopyKeepsFormat,
  fileId, jobChunk, parseCacheMode, progressOf, refuseTargetInChain, resolveBackingArg,
  type BackingRules, type BackingVerdict, type CacheMode, type ProgressEvent,
} from '@blk/jobs';

/** Just the backing rules of `o` (to hand a job's rules on to the images it opens; --backing-devices aside). */
export function rulesIn(o: BackingRules): BackingRules {
  return { backingDirs: o.backingDirs, forbidBacking: o.forbidBacking, approve: o.approve };
}

/** Options every job takes. */
export interface JobOptions extends BackingRules {
  /**
   * Where the files live. Default: the host file system with OS advisory
   * locks (`hostVfs()` of @blk/images), as the blk command uses.
   */
  vfs?: Vfs;
  /** Called as the copy progresses (the blk command draws its `-p` line from it). */
  onProgress?: (event: ProgressEvent) => void;
  /** I/O unit of the copy loop in bytes: a positive multiple of 512 (default 1 MiB). */
  chunkSize?: number;
  /** Guess every backing file's format from its content (--backing-probe; trusted images only). */
  backingProbe?: boolean;
  /** Cache mode of the written images (convert, commit): see CacheMode. Default writeback. */
  cache?: CacheMode;
  /** Stops the job between two of its steps (BlockError `aborted`). */
  signal?: AbortSignal | undefined;
}

export interface CliOpenOptions extends BackingRules {
  /** -f: the top image's format (probed when absent). */
  format?: string | undefined;
  /**
   * `format` is only a default nobody named (raw for a backing file, a
   * job's output): a file disguised as raw is refused, and writes that would
   * make it probe as another format are (see OpenImageOptions.formatAssumed).
   */
  formatAssumed?: boolean | undefined;
  readOnly: boolean;
  /** Format for the top image's direct backing file (rebase/compare -F style). */
  backingFormat?: string | undefined;
  /** --backing-probe: guess every backing file's format from its content. */
  backingProbe?: boolean | undefined;
  /** What to do when a backing file's size/mtime differ from the overlay's record. */
  onMismatch?: BackingPolicy['onMismatch'];
  /** Open the backing chain (default), or ignore it. */
  backingMode?: BackingPolicy['mode'];
  /** -U: read an image another process may be writing (force-share=on; read-only opens only). */
  forceShare?: boolean | undefined;
  /** Where the Vfs's warnings go (the blk command prints them as `blk: warning: ...`). */
  onWarning?: ((message: string) => void) | undefined;
}

/** openImage's options for the CLI's options (the Vfs aside). */
export function cliOpenOptions(o: CliOpenOptions): Parameters<typeof openImage>[1] {
  const options: Parameters<typeof openImage>[1] = { readOnly: o.readOnly, backing: backingPolicy(o) };
  if (o.format !== undefined) options.format = o.format;
  if (o.formatAssumed) options.formatAssumed = true;
  if (o.forceShare) options.forceShare = true;
  if (o.onWarning) options.onWarning = o.onWarning;
  return options;
}

export function backingPolicy(o: Omit<CliOpenOptions, 'readOnly' | 'format'>): BackingPolicy {
  const policy: BackingPolicy = {};
  if (o.backingDevices ?? backingDevicesAllowed()) policy.allowDevices = true;
  // 'ignore' (describe the image alone) stays possible under --forbid-backing: nothing is opened.
  const mode = o.backingMode ?? (o.forbidBacking ? 'forbid' : undefined);
  if (mode) policy.mode = mode;
  if (o.backingDirs && o.backingDirs.length > 0) policy.allowedDirs = [...o.backingDirs];
  if (o.approve) policy.approve = o.approve;
  if (o.onMismatch) policy.onMismatch = o.onMismatch;
  const first = o.backingFormat;
  if (o.backingProbe) {
    policy.format = first ? (ref, depth) => (depth === 1 ? first : 'probe') : 'probe';
  } else if (first) {
    // Below the first level, undefined keeps the default (recorded format, else raw unless it looks like another format).
    policy.format = (ref, depth) => (depth === 1 ? first : undefined);
  }
  return policy;
}

/** Decides whether `image`'s backing file may be opened under `rules`, without opening it. */
export async function judgeBacking(vfs: Vfs, image: Image, rules: BackingRules): Promise<BackingVerdict | undefined> {
  const ref = image.backingReference;
  if (!ref) return undefined;
  const resolved = image.info().backing?.resolved;
  const verdict: BackingVerdict = { stored: ref.path, resolved, allowed: true };
  try {
    await checkBackingAllowed(vfs, image, rules);
  } catch (err) {
    if (!isBlockError(err)) throw err;
    verdict.allowed = false;
    verdict.reason = err.detail;
  }
  return verdict;
}

/** Throws `backing-forbidden` unless the rules let blk open the backing file `image` names. */
async function checkBackingAllowed(vfs: Vfs, image: Image, rules: BackingRules): Promise<string> {
  const ref = image.backingReference;
  if (!ref) throw new BlockError('backing-missing', 'the image has no backing file', { path: image.path });
  exactBackingPath(ref, image.path); // a path that is not UTF-8 has no resolved form
  const resolved = image.info().backing?.resolved;
  if (resolved === undefined) throw new BlockError('backing-missing', 'the image has no backing file', { path: image.path });
  if (rules.forbidBacking) {
    throw new BlockError('backing-forbidden',
      `image names backing file '${ref.path}' and backing files are forbidden (--forbid-backing)`, { path: image.path });
  }
  const policy = backingPolicy(rules);
  await checkConfinement(vfs, policy, image.path, resolved);
  await checkApproval(policy, image.path, resolved);
  // No FIFO (its open would block), socket, character device or directory; no device unless allowed.
  const st = await vfs.stat(resolved).catch(() => undefined); // Missing: the open says so.
  if (st) checkBackingNode(policy, image.path, resolved, st);
  return resolved;
}

export interface BackingOpenOptions extends BackingRules {
  readOnly: boolean;
  /** --backing-probe: guess the format from the content. */
  backingProbe?: boolean | undefined;
  /** Open the backing file's own chain (default), or ignore it. */
  backingMode?: 'open' | 'ignore';
  /** -U: read it even while another process writes it (read-only opens only). */
  forceShare?: boolean | undefined;
  /** Where the open's warnings go (force-share's), instead of Node's process warnings. */
  onWarning?: ((message: string) => void) | undefined;
}

/**
 * Opens the backing file `top` names, for a job that works on it directly
 * (commit writes into it; check walks the chain a level at a time), under
 * the rules openImage applies inside a chain: the user's backing rules, and
 * a format that is the recorded one, else raw only if the file does not
 * carry another format's header (a cow file under a QEMU cow file must not
 * be written over as raw).
 */
export async function openBackingOf(vfs: Vfs, top: Image, o: BackingOpenOptions, named?: string): Promise<Image> {
  const resolved = await checkBackingAllowed(vfs, top, o);
  const ref = top.backingReference!;
  // `named` (-F) is this file's format, not its own backing file's.
  const policy = backingPolicy({ ...o, backingFormat: undefined, backingMode: o.backingMode });
  const options: Parameters<typeof openImage>[1] = {
    vfs,
    readOnly: o.readOnly,
    backing: policy,
    // A path from the image: a device only when allowed (checked again on the node actually opened).
    blockDevices: policy.allowDevices === true,
  };
  if (o.forceShare) options.forceShare = true;
  if (o.onWarning) options.onWarning = o.onWarning;
  if (named !== undefined) {
    options.format = named;
  } else if (!o.backingProbe) {
    options.format = ref.format ?? 'raw';
    options.formatAssumed = ref.format === undefined;
  }
  return openImage(resolved, options);
}

/**
 * Opens a backing file the user named (rebase -b, convert -B) to read it:
 * raw unless a format is given, and then refused if it carries another
 * format's header; its own chain opens under the user's rules.
 */
export async function openNamedBacking(vfs: Vfs, path: string, format: string | undefined, rules: BackingRules & { backingProbe?: boolean | undefined }): Promise<Image> {
  return openImage(path, {
    vfs,
    readOnly: true,
    format: format ?? 'raw',
    formatAssumed: format === undefined,
    backing: backingPolicy(rules),
  });
}

/** Opens an image on `vfs` as the CLI's options say. */
export async function openOn(vfs: Vfs, path: string, o: CliOpenOptions): Promise<Image> {
  return openImage(path, { ...cliOpenOptions(o), vfs });
}

/** The job's Vfs: the one given, else the host's (with locks). */
export function jobVfs(options: JobOptions): Vfs {
  return options.vfs ?? hostVfs();
}

export { cacheVfs } from '@blk/jobs';

/** Whole seconds of a file's mtime (floored), or undefined when it cannot be stat'ed. */
export async function mtimeOf(vfs: Vfs, path: string): Promise<number | undefined> {
  try {
    return (await vfs.stat(path)).mtimeSec;
  } catch {
    return undefined;
  }
}

let lastYield = 0;

/**
 * Lets signals, timers and output run during long loops of synchronous I/O
 * (file I/O is synchronous under the Promise API, so a loop of awaits never
 * returns to the event loop by itself). Yields at most every 10 ms.
 */
export async function yieldToEventLoop(): Promise<void> {
  const now = performance.now();
  if (now - lastYield < 10) return;
  lastYield = now;
  await new Promise((resolve) => setImmediate(resolve));
}

let zeros = Buffer.alloc(1024 * 1024);

/** True when every byte of `buf` is zero (memcmp against a zero buffer; @blk/jobs has a portable one). */
export function isZero(buf: Uint8Array): boolean {
  if (buf.length > zeros.length) zeros = Buffer.alloc(buf.length);
  return Buffer.from(buf.buffer, buf.byteOffset, buf.length).equals(zeros.subarray(0, buf.length));
}

/** True when `a` and `b` hold the same bytes (memcmp). */
export function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return Buffer.from(a.buffer, a.byteOffset, a.length).equals(b);
}
