/**
 * The glue between the blk command and @blk/jobs: the jobs' options without
 * the registry (the CLI's) and with the Vfs optional (the host's, with OS
 * advisory locks), --backing-devices defaulting to what the environment says
 * (read here, never in a job), and opening images with the CLI's backing
 * policy. The jobs themselves are in @blk/jobs.
 */
import { isBlockError, type BackingPolicy, type Image, type Vfs } from '@blk/core';
import {
  backingPolicy as jobBackingPolicy,
  checkBackingAllowed,
  jobOpenOptions,
  openBackingOf as openBackingOfJob,
  type BackingOpenOptions,
  type BackingRules,
  type BackingVerdict,
  type CacheMode,
  type JobContext,
  type JobOpenOptions,
  type ProgressEvent,
} from '@blk/jobs';
import { hostVfs, openImage, registry } from '../images.js';
import { backingDevicesAllowed } from '../backing-devices.js';

export {
  CACHE_MODES,
  CHUNK,
  COPY_CHUNK,
  COPY_DEPTH,
  CopyPipeline,
  chainFiles,
  checkCopiesKeepFormat,
  checkCopyKeepsFormat,
  fileId,
  jobChunk,
  parseCacheMode,
  progressOf,
  refuseTargetInChain,
  resolveBackingArg,
  type BackingRules,
  type BackingVerdict,
  type CacheMode,
  type ProgressEvent,
} from '@blk/jobs';

/** Just the backing rules of `o` (to hand a job's rules on to the images it opens; --backing-devices aside). */
export function rulesIn(o: BackingRules): BackingRules {
  return {
    backingDirs: o.backingDirs,
    forbidBacking: o.forbidBacking,
    approve: o.approve,
    allowOrigins: o.allowOrigins,
  };
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

/** The CLI's open options: a job's (see JobOpenOptions), --backing-devices defaulting to the environment's answer. */
export type CliOpenOptions = JobOpenOptions;

/** openImage's options for the CLI's options (the Vfs aside). */
export function cliOpenOptions(o: CliOpenOptions): Parameters<typeof openImage>[1] {
  return jobOpenOptions(withDeviceDefault(o));
}

/** A job's BackingPolicy for the CLI's options: --backing-devices defaults to the environment's answer. */
export function backingPolicy(o: Omit<CliOpenOptions, 'readOnly' | 'format'>): BackingPolicy {
  return jobBackingPolicy(withDeviceDefault(o));
}

/** Decides whether `image`'s backing file may be opened under `rules`, without opening it. */
export async function judgeBacking(vfs: Vfs, image: Image, rules: BackingRules): Promise<BackingVerdict | undefined> {
  const ref = image.backingReference;
  if (!ref) return undefined;
  const resolved = image.info().backing?.resolved;
  const verdict: BackingVerdict = { stored: ref.path, resolved, allowed: true };
  try {
    await checkBackingAllowed(vfs, image, withDeviceDefault(rules));
  } catch (err) {
    if (!isBlockError(err)) throw err;
    verdict.allowed = false;
    verdict.reason = err.detail;
  }
  return verdict;
}

/**
 * Opens the backing file `top` names for a job that works on it directly
 * (check walks the chain a level at a time): @blk/jobs' openBackingOf on the
 * CLI's registry, --backing-devices defaulting to the environment's answer.
 */
export function openBackingOf(vfs: Vfs, top: Image, o: BackingOpenOptions, named?: string): Promise<Image> {
  return openBackingOfJob({ registry, vfs }, top, withDeviceDefault(o), named);
}

/** `o` with --backing-devices answered: as given, else as the environment says (the CLI reads it, jobs never). */
export function withDeviceDefault<T extends BackingRules>(o: T): T {
  return { ...o, backingDevices: o.backingDevices ?? backingDevicesAllowed() };
}

/**
 * A job's options on the blk command's host: the CLI's registry, the Vfs
 * given (else the host's, with locks), --backing-devices answered.
 */
export function onHost<T extends BackingRules & { vfs?: Vfs | undefined }>(o: T): T & JobContext {
  return { ...withDeviceDefault(o), registry, vfs: jobVfs(o) };
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
