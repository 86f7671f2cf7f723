/**
 * What the jobs (commit, rebase, convert) share: options, opening images on a
 * Vfs with the CLI's backing policy, and the copy loop's helpers. Nothing here
 * touches node:fs or node:path: every file-system action goes through a Vfs.
 */
import type { BackingPolicy, Image, Vfs } from '@blk/core';
import { hostVfs, openImage } from '../images.js';

/** Large I/O unit for copy loops. */
export const CHUNK = 1024 * 1024;

/** A job's progress: `done` of `total` bytes gone through. */
export interface ProgressEvent {
  /** 'start' once the copy begins (done = 0), 'update' as it goes, 'end' when the job has finished it. */
  phase: 'start' | 'update' | 'end';
  done: number;
  total: number;
}

/** Options every job takes. */
export interface JobOptions {
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
}

export interface CliOpenOptions {
  /** -f: the top image's format (probed when absent). */
  format?: string | undefined;
  readOnly: boolean;
  /** Format for the top image's direct backing file (rebase/compare -F style). */
  backingFormat?: string | undefined;
  /** --backing-probe: guess every backing file's format from its content. */
  backingProbe?: boolean | undefined;
  /** What to do when a backing file's size/mtime differ from the overlay's record. */
  onMismatch?: BackingPolicy['onMismatch'];
  /** Open the backing chain (default), or ignore it. */
  backingMode?: BackingPolicy['mode'];
}

export function backingPolicy(o: Omit<CliOpenOptions, 'readOnly' | 'format'>): BackingPolicy {
  const policy: BackingPolicy = {};
  if (o.backingMode) policy.mode = o.backingMode;
  if (o.onMismatch) policy.onMismatch = o.onMismatch;
  const first = o.backingFormat;
  if (o.backingProbe) {
    policy.format = first ? (ref, depth) => (depth === 1 ? first : 'probe') : 'probe';
  } else if (first) {
    policy.format = (ref, depth) => (depth === 1 ? first : ref.format ?? 'raw');
  }
  return policy;
}

/** Opens an image on `vfs` as the CLI's options say. */
export async function openOn(vfs: Vfs, path: string, o: CliOpenOptions): Promise<Image> {
  const options: Parameters<typeof openImage>[1] = { vfs, readOnly: o.readOnly, backing: backingPolicy(o) };
  if (o.format !== undefined) options.format = o.format;
  return openImage(path, options);
}

/** The job's Vfs: the one given, else the host's (with locks). */
export function jobVfs(options: JobOptions): Vfs {
  return options.vfs ?? hostVfs();
}

/** The copy loop's I/O unit, checked. */
export function jobChunk(options: JobOptions): number {
  const chunk = options.chunkSize ?? CHUNK;
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
