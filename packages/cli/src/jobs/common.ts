/**
 * What the jobs (commit, rebase, convert) share: options, opening images on a
 * Vfs with the CLI's backing policy, and the copy loop's helpers. Nothing here
 * touches node:fs or node:path: every file-system action goes through a Vfs.
 */
import { BlockError, FilterStorage, checkApproval, checkBackingNode, checkConfinement, exactBackingPath, isBlockError, type BackingPolicy, type Image, type Storage, type StorageCapabilities, type Vfs } from '@blk/core';
import { hostVfs, openImage } from '../images.js';
import { backingDevicesAllowed } from '../backing-devices.js';

/** Large I/O unit for copy loops. */
export const CHUNK = 1024 * 1024;

/** I/O unit of the convert and commit copy loops (larger requests, fewer round trips). */
export const COPY_CHUNK = 4 * 1024 * 1024;

/** Chunks the convert and commit copy loops keep in flight (read one while writing another). */
export const COPY_DEPTH = 4;

/**
 * qemu-img's `-t CACHE` for the image a job writes:
 * - `writeback` (the default): flush (fsync) when the job is done, and at
 *   each step of its crash-safety protocol; the result is durable when the
 *   job returns.
 * - `unsafe`: never flush (qemu-img convert's own default, and what uml_moo
 *   does): faster, and safe against the process being killed (the page cache
 *   survives it), but a power loss or OS crash can lose or tear the result.
 * - `none`, `writethrough`, `directsync`: accepted for qemu-img compatibility
 *   and treated as `writeback` (blk has no O_DIRECT or O_DSYNC I/O).
 */
export type CacheMode = 'writeback' | 'unsafe' | 'none' | 'writethrough' | 'directsync';

export const CACHE_MODES: readonly CacheMode[] = ['writeback', 'unsafe', 'none', 'writethrough', 'directsync'];

/** Checks a `-t` value. */
export function parseCacheMode(value: string | undefined): CacheMode {
  if (value === undefined) return 'writeback';
  if ((CACHE_MODES as readonly string[]).includes(value)) return value as CacheMode;
  throw new RangeError(`invalid cache mode '${value}': use one of ${CACHE_MODES.join(', ')}`);
}

/** A job's progress: `done` of `total` bytes gone through. */
export interface ProgressEvent {
  /** 'start' once the copy begins (done = 0), 'update' as it goes, 'end' when the job has finished it. */
  phase: 'start' | 'update' | 'end';
  done: number;
  total: number;
}

/**
 * What the user allows of backing files named inside images (a path in an
 * image is data from whoever made the image, not an instruction).
 */
export interface BackingRules {
  /** --backing-dir: backing files must lie in these directories, also after following symlinks (backing.allowedDirs). */
  backingDirs?: string[] | undefined;
  /** --forbid-backing: refuse images that name a backing file (backing.mode 'forbid'). */
  forbidBacking?: boolean | undefined;
  /** A rule of the caller's for each backing file (BackingPolicy.approve; the blk command's owner rule). */
  approve?: BackingPolicy['approve'] | undefined;
  /**
   * --backing-devices: images may name block devices as backing files
   * (BackingPolicy.allowDevices). Default: what the blk command was told, else no.
   */
  backingDevices?: boolean | undefined;
}

/** Just the backing rules of `o` (to hand a job's rules on to the images it opens). */
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

/** What the backing rules say of the backing file an image names, decided without opening it. */
export interface BackingVerdict {
  /** The path as stored in the image. */
  stored: string;
  /** The absolute path it resolves to (undefined when it cannot be resolved safely). */
  resolved: string | undefined;
  /** Whether the rules let blk open it. */
  allowed: boolean;
  /** Why not, when not allowed. */
  reason?: string;
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

/**
 * Refuses, before anything is written, a copy of `runs` of `source` into
 * `target` that would make `target` probe as another format: the guest data
 * landing in the bytes that decide how a raw file probes (its first and last
 * bytes) must not turn it into, say, an overlay naming a host file. Only
 * images whose writes are guarded (format probed or assumed) are checked; the
 * guard also checks every write as it happens.
 */
export async function checkCopyKeepsFormat(target: Image, source: Image,
  runs: ReadonlyArray<{ start: number; length: number }>): Promise<void> {
  await checkCopiesKeepFormat(target, [{ source, runs }]);
}

/** checkCopyKeepsFormat for several copies applied in order (commit -b: the lowest layer first, the top last). */
export async function checkCopiesKeepFormat(target: Image,
  copies: ReadonlyArray<{ source: Image; runs: ReadonlyArray<{ start: number; length: number }> }>): Promise<void> {
  const writes: Array<{ offset: number; data: Uint8Array }> = [];
  for (const { source, runs } of copies) {
    for (const range of target.probeGuardRanges()) {
      for (const run of runs) {
        const from = Math.max(run.start, range.start);
        const to = Math.min(run.start + run.length, range.start + range.length, source.size);
        if (from >= to) continue;
        const data = new Uint8Array(to - from);
        await source.readInto(from, data);
        writes.push({ offset: from, data });
      }
    }
  }
  await target.checkWrites(writes).catch((err: unknown) => {
    if (!isBlockError(err, 'probe-guard')) throw err;
    throw new BlockError('probe-guard', `refusing to copy guest data that would make this file probe as `
      + `${err.format ?? 'another format'} (at offset ${err.offset ?? 0}): it is read as raw only because no format `
      + 'was named, and would then no longer be; nothing was written', { path: target.path, offset: err.offset, format: err.format });
  });
}

/** The job's Vfs: the one given, else the host's (with locks). */
export function jobVfs(options: JobOptions): Vfs {
  return options.vfs ?? hostVfs();
}

/**
 * The job's Vfs as its cache mode wants it: with `unsafe`, every storage it
 * opens ignores flush() (nothing is ever fsync'ed); otherwise `vfs` itself.
 */
export function cacheVfs(vfs: Vfs, options: JobOptions): Vfs {
  const mode = parseCacheMode(options.cache);
  if (mode !== 'unsafe') return vfs;
  const wrapped: Vfs = {
    open: async (path, o) => unflushed(await vfs.open(path, o)),
    stat: (path) => vfs.stat(path),
    lstat: (path) => vfs.lstat(path),
    realpath: (path) => vfs.realpath(path),
    resolve: (base, path) => vfs.resolve(base, path),
    dirname: (path) => vfs.dirname(path),
    cwd: () => vfs.cwd(),
    exists: (path) => vfs.exists(path),
    remove: (path) => vfs.remove(path),
    rename: (from, to) => vfs.rename(from, to),
  };
  if (vfs.setAttributes) wrapped.setAttributes = (path, attributes) => vfs.setAttributes!(path, attributes);
  return wrapped;
}

/** A storage whose flush() does nothing (-t unsafe), and says so; everything else is the storage's own. */
class UnflushedStorage extends FilterStorage {
  protected override filterCapabilities(below: StorageCapabilities): StorageCapabilities {
    return { ...super.filterCapabilities(below), flush: false };
  }
  override async flush(): Promise<void> { /* -t unsafe: never flush. */ }
}

/** `storage` whose flush() does nothing; reads, readSync, extentAt and zeroRange are the storage's own. */
function unflushed(storage: Storage): Storage {
  return new UnflushedStorage(storage);
}

/**
 * A copy loop's pipeline: up to `depth` tasks in flight, each with a slot of
 * buffers of its own, so that reading one chunk overlaps writing another
 * when the storage's I/O is asynchronous (and costs nothing when it is not).
 * The first failure stops new tasks and is thrown by start() or drain().
 */
export class CopyPipeline<S> {
  private readonly free: S[];
  private readonly inflight = new Set<Promise<void>>();
  private failure: { err: unknown } | undefined;

  constructor(depth: number, slot: () => S) {
    this.free = Array.from({ length: Math.max(1, depth) }, slot);
  }

  /** Waits for a free slot, then starts `task` on it without waiting for it to finish. */
  async start(task: (slot: S) => Promise<void>): Promise<void> {
    while (this.free.length === 0 && !this.failure) await Promise.race(this.inflight);
    if (this.failure) throw this.failure.err;
    const slot = this.free.pop() as S;
    const p: Promise<void> = task(slot)
      .then(() => undefined, (err: unknown) => { this.failure ??= { err }; })
      .finally(() => {
        this.free.push(slot);
        this.inflight.delete(p);
      });
    this.inflight.add(p);
  }

  /** Waits for every task; throws the first failure. */
  async drain(): Promise<void> {
    while (this.inflight.size > 0) await Promise.race(this.inflight);
    if (this.failure) throw this.failure.err;
  }

  /** Waits for every task, ignoring failures (before cleaning up after an error). */
  async settle(): Promise<void> {
    while (this.inflight.size > 0) await Promise.race(this.inflight);
  }
}

/** The copy loop's I/O unit, checked. */
export function jobChunk(options: JobOptions, fallback = CHUNK): number {
  const chunk = options.chunkSize ?? fallback;
  if (!Number.isSafeInteger(chunk) || chunk <= 0 || chunk % 512 !== 0) {
    throw new RangeError(`chunk size ${chunk} is not a positive multiple of 512`);
  }
  return chunk;
}

/**
 * A backing file named on the command line, as qemu-img resolves it: a
 * relative name is relative to the directory of the image that will refer to
 * it, not to the current directory. An absolute name is kept as given (it is
 * what the image will record). Vfs paths are POSIX-style.
 */
export function resolveBackingArg(vfs: Vfs, imagePath: string, backing: string): string {
  if (backing.startsWith('/')) return backing;
  return vfs.resolve(vfs.dirname(vfs.resolve(vfs.cwd(), imagePath)), backing);
}

/** A file's identity (device and inode), following symlinks; undefined when it cannot be stat'ed or the Vfs has none. */
export async function fileId(vfs: Vfs, path: string): Promise<string | undefined> {
  return (await vfs.stat(path).catch(() => undefined))?.id;
}

/** The identities of every file of an opened image's chain (top first), with the path each was opened by. */
export async function chainFiles(vfs: Vfs, image: Image | undefined): Promise<Map<string, string>> {
  const files = new Map<string, string>();
  for (let layer = image; layer; layer = layer.backing) {
    const id = await fileId(vfs, layer.path);
    if (id !== undefined) files.set(id, layer.path);
  }
  return files;
}

/**
 * Refuses `target` (a file the job is about to write or replace) when it is
 * one of the files of `chain` (compared by device and inode, so that neither
 * a symlink nor a hard link hides it): writing it would destroy data the job
 * still reads, or make an image its own backing file.
 */
export async function refuseTargetInChain(vfs: Vfs, target: string, chain: Map<string, string>, what: string): Promise<void> {
  const id = await fileId(vfs, target);
  const same = id === undefined ? undefined : chain.get(id);
  if (same !== undefined) {
    throw new BlockError('backing-loop', `is also ${what} (${same}): the same file cannot be both`, { path: target });
  }
}

/** Whole seconds of a file's mtime (floored), or undefined when it cannot be stat'ed. */
export async function mtimeOf(vfs: Vfs, path: string): Promise<number | undefined> {
  try {
    return (await vfs.stat(path)).mtimeSec;
  } catch {
    return undefined;
  }
}

/** Turns the `onProgress` callback into the three calls the copy loops make. */
export function progressOf(options: JobOptions, total: number): { update(done: number): void; end(): void } {
  const on = options.onProgress;
  if (!on) return { update() {}, end() {} };
  on({ phase: 'start', done: 0, total });
  let last = 0;
  return {
    update(done) {
      last = done;
      on({ phase: 'update', done, total });
    },
    end() {
      on({ phase: 'end', done: last, total });
    },
  };
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

/** True when every byte of `buf` is zero (memcmp against a zero buffer). */
export function isZero(buf: Uint8Array): boolean {
  if (buf.length > zeros.length) zeros = Buffer.alloc(buf.length);
  return Buffer.from(buf.buffer, buf.byteOffset, buf.length).equals(zeros.subarray(0, buf.length));
}

/** True when `a` and `b` hold the same bytes (memcmp). */
export function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return Buffer.from(a.buffer, a.byteOffset, a.length).equals(b);
}
