/**
 * qemu-io's open flags (`-r -s -n -k -U`, `-t cache`, `-i aio`, `-d discard`,
 * `-o key=value`, see block-options.ts) parsed with qemu-io's error texts into
 * `IoOpenOptions` (open-options.ts opens a file with them).
 *
 * Meanings (qemu-io 7.2's, or blk's equivalent):
 * - `-t` (bdrv_parse_cache_mode): `writethrough` and `directsync` flush after
 *   every write request; `writeback` and `none`/`off` flush when the file is
 *   closed (and on `flush`); `unsafe` never syncs. blk has no O_DIRECT, so
 *   `none`/`directsync` differ from their writeback/writethrough twins only
 *   in the page cache, which blk does not bypass. `-n` is `-t none`.
 * - `-i` threads|native|io_uring and `-k`: accepted; blk's I/O is the same
 *   for all three.
 * - `-d` unmap|on (the default) or ignore|off: with ignore, `discard` and
 *   `write -z -u` do not deallocate anything (QEMU drops BDRV_O_UNMAP).
 * - `-s`: writes go to a temporary cow overlay on the file, deleted when the
 *   file is closed (QEMU uses a temporary qcow2); the file itself is opened
 *   read-only.
 * - `-U`: open without taking the image's lock (`forceShare` open option).
 */
import type { BackingRules } from '../jobs/common.js';

export interface IoOpenOptions {
  format?: string | undefined;
  readOnly: boolean;
  snapshot: boolean;
  cache: IoCache;
  /** False with `-d ignore`: discards and unmapping zero writes do nothing. */
  unmap: boolean;
  forceShare: boolean;
  /** -k / -i native: QEMU then insists on cache.direct (-t none or directsync), and so does blk. */
  nativeAio: boolean;
  backingProbe?: boolean | undefined;
  /** --backing-dir, --forbid-backing and the default rule, for the backing files the image names. */
  rules?: BackingRules | undefined;
  /** -F or `backing.driver`: the format of the image's backing file (cow records none). */
  backingFormat?: string | undefined;
  /** `backing: null`: open no backing file; what the image does not hold reads as zeros. */
  noBacking?: boolean | undefined;
  /** qcow2's `lazy-refcounts` option (undefined: as the image's header says). */
  lazyRefcounts?: boolean | undefined;
}

export interface IoCache {
  /** Flush after every write request (the image's write cache is off). */
  writethrough: boolean;
  /** Never sync (`unsafe`). */
  noFlush: boolean;
  /** cache.direct (none, directsync): no effect on blk's I/O, but QEMU's aio=native needs it. */
  direct: boolean;
}

/** bdrv_parse_cache_mode(): undefined for an unknown mode. */
export function parseCache(mode: string): IoCache | undefined {
  switch (mode) {
    case 'none':
    case 'off':
      return { writethrough: false, noFlush: false, direct: true };
    case 'writeback':
      return { writethrough: false, noFlush: false, direct: false };
    case 'directsync':
      return { writethrough: true, noFlush: false, direct: true };
    case 'writethrough':
      return { writethrough: true, noFlush: false, direct: false };
    case 'unsafe':
      return { writethrough: false, noFlush: true, direct: false };
    default:
      return undefined;
  }
}

/** `-n`, `-t none`: writeback through the page cache in blk (which has no O_DIRECT). */
export const NOCACHE: IoCache = { writethrough: false, noFlush: false, direct: true };

/** bdrv_parse_aio(). */
export function validAio(mode: string): boolean {
  return mode === 'threads' || mode === 'native' || mode === 'io_uring';
}

/** QEMU's checks of a combination of open flags (raw-posix and blk_new_open): the message, or undefined when fine. */
export function openConflict(o: IoOpenOptions): string | undefined {
  if (o.nativeAio && !o.cache.direct) {
    return 'aio=native was specified, but it requires cache.direct=on, which was not specified.';
  }
  if (o.forceShare && !o.readOnly) return 'force-share=on can only be used with read-only images';
  return undefined;
}

/** bdrv_parse_discard_flags(): true = unmap, false = ignore, undefined = unknown. */
export function parseDiscard(mode: string): boolean | undefined {
  if (mode === 'on' || mode === 'unmap') return true;
  if (mode === 'off' || mode === 'ignore') return false;
  return undefined;
}
