/**
 * What the jobs share: options, opening images on a Vfs through a registry
 * with the caller's backing rules, and the copy engine's helpers. Portable:
 * no Node built-in, no Buffer, no environment; the registry and the Vfs are
 * the caller's (the blk command passes the host file system and its
 * registry of built-in formats).
 */
import {
  BlockError,
  checkApproval,
  checkBackingNode,
  checkConfinement,
  createImage as coreCreateImage,
  exactBackingPath,
  FilterStorage,
  isBlockError,
  openImage as coreOpenImage,
  type BackingPolicy,
  type CreateImageOptions,
  type DriverRegistry,
  type Image,
  type OpenImageOptions,
  type Storage,
  type StorageCapabilities,
  type Vfs,
} from '@blk/core/portable';

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
  /** --backing-devices: images may name block devices as backing files (BackingPolicy.allowDevices). Default no. */
  backingDevices?: boolean | undefined;
  /** Origins backing files may come from besides the image's own (BackingPolicy.allowOrigins). */
  allowOrigins?: BackingPolicy['allowOrigins'] | undefined;
}

/** Just the backing rules of `o` (to hand a job's rules on to the images it opens). */
export function rulesIn(o: BackingRules): BackingRules {
  const rules: BackingRules = { backingDirs: o.backingDirs, forbidBacking: o.forbidBacking, approve: o.approve };
  if (o.backingDevices !== undefined) rules.backingDevices = o.backingDevices;
  if (o.allowOrigins !== undefined) rules.allowOrigins = o.allowOrigins;
  return rules;
}

/** Where a job finds formats and files: a registry and a Vfs (a Host carries both). */
export interface JobContext {
  /** The formats the job may open and create. */
  registry: DriverRegistry;
  /** Where the files live (every file-system action of the job goes through it). */
  vfs: Vfs;
}

/** Options every job takes. */
export interface JobOptions extends BackingRules, JobContext {
  /** Called as the copy progresses (the blk command draws its `-p` line from it). */
  onProgress?: (event: ProgressEvent) => void;
  /** I/O unit of the copy loop in bytes: a positive multiple of 512 (default 1 MiB). */
  chunkSize?: number;
  /** Guess every backing file's format from its content (--backing-probe; trusted images only). */
  backingProbe?: boolean;
  /** Cache mode of the written images (convert, commit): see CacheMode. Default writeback. */
  cache?: CacheMode;
  /** Stops the job between two of its steps (runs, chunks) with a BlockError of kind `aborted`. */
  signal?: AbortSignal | undefined;
}

/** Throws `aborted` when `signal` has fired (jobs call it between their steps). */
export function checkAborted(signal: AbortSignal | undefined, path?: string): void {
  if (signal?.aborted) {
    const reason: unknown = signal.reason;
    const why = reason instanceof Error ? reason.message : typeof reason === 'string' ? reason : 'aborted';
    throw new BlockError(
      'aborted',
      `stopped: ${why}`,
      path !== undefined ? { path, cause: reason } : { cause: reason },
    );
  }
}

export interface JobOpenOptions extends BackingRules {
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
  /** The top image opens to be checked and repaired (check -r; see `DriverOpenOptions.forCheck`). */
  forCheck?: boolean | undefined;
  /** Where the Vfs's warnings go (the blk command prints them as `blk: warning: ...`). */
  onWarning?: ((message: string) => void) | undefined;
  /** Options for the top image's driver (qcow2's `snapshot`: open the image as it was then). */
  driverOptions?: Record<string, unknown> | undefined;
}

/** The BackingPolicy of a job's options (no environment: `backingDevices` is the caller's answer). */
export function backingPolicy(o: Omit<JobOpenOptions, 'readOnly' | 'format'>): BackingPolicy {
  const policy: BackingPolicy = {};
  if (o.backingDevices) policy.allowDevices = true;
  // 'ignore' (describe the image alone) stays possible under --forbid-backing: nothing is opened.
  const mode = o.backingMode ?? (o.forbidBacking ? 'forbid' : undefined);
  if (mode) policy.mode = mode;
  if (o.backingDirs && o.backingDirs.length > 0) policy.allowedDirs = [...o.backingDirs];
  if (o.approve) policy.approve = o.approve;
  if (o.allowOrigins) policy.allowOrigins = o.allowOrigins;
  if (o.onMismatch) policy.onMismatch = o.onMismatch;
  const first = o.backingFormat;
  if (o.backingProbe) {
    policy.format = first ? (_ref, depth) => (depth === 1 ? first : 'probe') : 'probe';
  } else if (first) {
    // Below the first level, undefined keeps the default (recorded format, else raw unless it looks like another format).
    policy.format = (_ref, depth) => (depth === 1 ? first : undefined);
  }
  return policy;
}

/** openImage's options for a job's open options (registry and Vfs aside). */
export function jobOpenOptions(o: JobOpenOptions): Omit<OpenImageOptions, 'registry' | 'vfs'> {
  const options: Omit<OpenImageOptions, 'registry' | 'vfs'> = { readOnly: o.readOnly, backing: backingPolicy(o) };
  if (o.format !== undefined) options.format = o.format;
  if (o.formatAssumed) options.formatAssumed = true;
  if (o.forceShare) options.forceShare = true;
  if (o.forCheck) options.forCheck = true;
  if (o.onWarning) options.onWarning = o.onWarning;
  if (o.driverOptions) options.driverOptions = o.driverOptions;
  return options;
}

/** Opens `path` in the job's context. */
export function openIn(
  ctx: JobContext,
  path: string,
  options: Omit<OpenImageOptions, 'registry' | 'vfs'>,
): Promise<Image> {
  return coreOpenImage(path, { ...options, registry: ctx.registry, vfs: ctx.vfs });
}

/** Creates `path` in the job's context. */
export function createIn(
  ctx: JobContext,
  path: string,
  options: Omit<CreateImageOptions, 'registry' | 'vfs'>,
): Promise<void> {
  return coreCreateImage(path, { ...options, registry: ctx.registry, vfs: ctx.vfs });
}

/** Opens an image in the job's context as the job's open options say. */
export function openOn(ctx: JobContext, path: string, o: JobOpenOptions): Promise<Image> {
  return openIn(ctx, path, jobOpenOptions(o));
}

/** What the backing rules say of the backing file an image names, decided without opening it. */
export interface BackingVerdict {
  /** The path as stored in the image. */
  stored: string;
  /** The absolute path it resolves to (undefined when it cannot be resolved safely). */
  resolved: string | undefined;
  /** Whether the rules let the job open it. */
  allowed: boolean;
  /** Why not, when not allowed. */
  reason?: string;
}

/** Throws `backing-forbidden` unless the rules let a job open the backing file `image` names; returns its path. */
export async function checkBackingAllowed(vfs: Vfs, image: Image, rules: BackingRules): Promise<string> {
  const ref = image.backingReference;
  if (!ref) throw new BlockError('backing-missing', 'the image has no backing file', { path: image.path });
  exactBackingPath(ref, image.path); // a path that is not UTF-8 has no resolved form
  const resolved = image.info().backing?.resolved;
  if (resolved === undefined)
    throw new BlockError('backing-missing', 'the image has no backing file', { path: image.path });
  if (rules.forbidBacking) {
    throw new BlockError(
      'backing-forbidden',
      `image names backing file '${ref.path}' and backing files are forbidden (--forbid-backing)`,
      { path: image.path },
    );
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
  /** Where the open's warnings go (force-share's). */
  onWarning?: ((message: string) => void) | undefined;
}

/**
 * Opens the backing file `top` names, for a job that works on it directly
 * (commit writes into it; check walks the chain a level at a time), under
 * the rules openImage applies inside a chain: the user's backing rules, and
 * a format that is the recorded one, else raw only if the file does not
 * carry another format's header (a cow file under a QEMU cow file must not
 * be written over as raw). `named` (-F) is this file's format.
 */
export async function openBackingOf(
  ctx: JobContext,
  top: Image,
  o: BackingOpenOptions,
  named?: string,
  held: readonly Image[] = [top],
): Promise<Image> {
  const resolved = await checkBackingAllowed(ctx.vfs, top, o);
  const ref = top.backingReference!;
  // `named` (-F) is this file's format, not its own backing file's.
  const policy = backingPolicy({ ...o, backingFormat: undefined, backingMode: o.backingMode });
  const options: Omit<OpenImageOptions, 'registry' | 'vfs'> = {
    readOnly: o.readOnly,
    backing: policy,
    // A path from the image: a device only when allowed (checked again on the node actually opened).
    blockDevices: policy.allowDevices === true,
    // The images the job holds open: a chain that loops back to one is a loop, not another process's lock.
    heldFiles: held.map((image) => image.path),
  };
  if (o.forceShare) options.forceShare = true;
  if (o.onWarning) options.onWarning = o.onWarning;
  if (named !== undefined) {
    options.format = named;
  } else if (!o.backingProbe) {
    options.format = ref.format ?? 'raw';
    options.formatAssumed = ref.format === undefined;
  }
  return openIn(ctx, resolved, options);
}

/**
 * Opens a backing file the user named (rebase -b, convert -B) to read it:
 * raw unless a format is given, and then refused if it carries another
 * format's header; its own chain opens under the user's rules.
 */
export function openNamedBacking(
  ctx: JobContext,
  path: string,
  format: string | undefined,
  rules: BackingRules & { backingProbe?: boolean | undefined },
  held: readonly Image[] = [],
): Promise<Image> {
  return openIn(ctx, path, {
    readOnly: true,
    format: format ?? 'raw',
    formatAssumed: format === undefined,
    backing: backingPolicy(rules),
    // The images the job holds open (rebase's overlay): a chain that reaches one is a loop.
    heldFiles: held.map((image) => image.path),
  });
}

/**
 * Refuses, before anything is written, a copy of `runs` of `source` into
 * `target` that would make `target` probe as another format: the guest data
 * landing in the bytes that decide how a raw file probes (its first and last
 * bytes) must not turn it into, say, an overlay naming a host file. Only
 * images whose writes are guarded (format probed or assumed) are checked; the
 * guard also checks every write as it happens.
 */
export async function checkCopyKeepsFormat(
  target: Image,
  source: Image,
  runs: ReadonlyArray<{ start: number; length: number }>,
): Promise<void> {
  await checkCopiesKeepFormat(target, [{ source, runs }]);
}

/** checkCopyKeepsFormat for several copies applied in order (commit -b: the lowest layer first, the top last). */
export async function checkCopiesKeepFormat(
  target: Image,
  copies: ReadonlyArray<{ source: Image; runs: ReadonlyArray<{ start: number; length: number }> }>,
): Promise<void> {
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
    throw new BlockError(
      'probe-guard',
      `refusing to copy guest data that would make this file probe as `
        + `${err.format ?? 'another format'} (at offset ${err.offset ?? 0}): it is read as raw only because no format `
        + 'was named, and would then no longer be; nothing was written',
      { path: target.path, offset: err.offset, format: err.format },
    );
  });
}

/**
 * The job's Vfs as its cache mode wants it: with `unsafe`, every storage it
 * opens ignores flush() (nothing is ever fsync'ed); otherwise `vfs` itself.
 */
export function cacheVfs(vfs: Vfs, options: { cache?: CacheMode | undefined }): Vfs {
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
  if (vfs.resolveBacking) wrapped.resolveBacking = (image, name) => vfs.resolveBacking!(image, name);
  return wrapped;
}

/** A storage whose flush() does nothing (-t unsafe), and says so; everything else is the storage's own. */
class UnflushedStorage extends FilterStorage {
  protected override filterCapabilities(below: StorageCapabilities): StorageCapabilities {
    return { ...super.filterCapabilities(below), flush: false };
  }
  override async flush(): Promise<void> {
    /* -t unsafe: never flush. */
  }
  /** The thread-pool flush does nothing either; reads and writes on the pool stay the storage's (`pool` is kept). */
  override async flushOnPool(): Promise<void> {
    /* -t unsafe: never flush. */
  }
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
      .then(
        () => undefined,
        (err: unknown) => {
          this.failure ??= { err };
        },
      )
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
export function jobChunk(options: { chunkSize?: number | undefined }, fallback = CHUNK): number {
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
export async function refuseTargetInChain(
  vfs: Vfs,
  target: string,
  chain: Map<string, string>,
  what: string,
): Promise<void> {
  const id = await fileId(vfs, target);
  const same = id === undefined ? undefined : chain.get(id);
  if (same !== undefined) {
    throw new BlockError('backing-loop', `is also ${what} (${same}): the same file cannot be both`, { path: target });
  }
}

/** Turns the `onProgress` callback into the three calls the copy loops make. */
export function progressOf(
  options: { onProgress?: ((event: ProgressEvent) => void) | undefined },
  total: number,
): {
  update(done: number): void;
  end(): void;
} {
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

type Immediate = (callback: () => void) => unknown;

/**
 * Lets signals, timers and output run during long loops of I/O that
 * completes synchronously (a loop of awaits on resolved promises never
 * returns to the event loop by itself). Yields at most every 10 ms; one per
 * job (no state shared between jobs). Uses the host's setImmediate where
 * there is one (Node: no 1 ms clamp), else a zero timeout.
 */
export class EventLoopYielder {
  private last = 0;

  async yield(): Promise<void> {
    const now = performance.now();
    if (now - this.last < 10) return;
    this.last = now;
    const immediate = (globalThis as { setImmediate?: Immediate }).setImmediate;
    await new Promise<void>((resolve) => {
      if (immediate) immediate(resolve);
      else setTimeout(resolve, 0);
    });
  }
}

export { isZero, sameBytes } from './bytes.js';
