import type { Image } from '@blk/core';
import { type BackingRules, type CliOpenOptions } from './jobs/common.js';
export { CHUNK, backingPolicy, isZero, yieldToEventLoop, type CliOpenOptions } from './jobs/common.js';
/** The backing-rule flags as commander hands them over (--backing-dir DIR..., --forbid-backing). */
export interface BackingRuleFlags {
    backingDir?: string[];
    forbidBacking?: boolean;
}
/**
 * The flags as the jobs' BackingRules. Without --backing-dir or
 * --forbid-backing, the default rule applies: an image may name only files
 * its owner can read (owner-rule.ts).
 */
export declare function rulesOf(opts: BackingRuleFlags): BackingRules;
/** Opens an image as the CLI's options say. */
export declare function openCli(path: string, o: CliOpenOptions): Promise<Image>;
/** Bytes the file occupies on disk (st_blocks * 512), as qemu-img's actual-size. */
export declare function allocatedBytes(path: string): number | undefined;
/** Whole seconds of a file's mtime (floored from nanoseconds), or undefined when it is absent. */
export declare function mtimeSec(path: string): number | undefined;
/**
 * A backing file named on the command line, as qemu-img resolves it: a
 * relative name is relative to the directory of the image that will refer
 * to it, not to the current directory.
 */
export declare function resolveBackingArg(imagePath: string, backing: string): string;
/**
 * Runs `cleanup` (synchronously) if the process is interrupted by SIGINT,
 * SIGTERM or SIGHUP, then exits with 128 + the signal number. Returns a
 * function that removes the handlers.
 */
export declare function onInterrupt(cleanup: () => void): () => void;
/**
 * For a job that writes under a temporary name (convert, dd): while it
 * exists, SIGINT, SIGTERM or SIGHUP remove it before exiting. Pass
 * `onTempFile` to the job; call `off` when the job has settled.
 */
export declare function removeTempOnInterrupt(): {
    onTempFile: (path: string | undefined) => void;
    off: () => void;
};
/** Index of the first byte where a and b differ (same length), or -1. */
export declare function firstDifference(a: Uint8Array, b: Uint8Array): number;
/** Index of the first non-zero byte, or -1. */
export declare function firstNonZero(buf: Uint8Array): number;
