import type { BackingReference } from '../format/driver.js';
import { type FileStat, type Vfs } from '../storage/storage.js';
/** Default and documented limit on backing-chain depth (the top image is depth 0). */
export declare const DEFAULT_MAX_CHAIN_DEPTH = 16;
/**
 * What to do with backing files named inside images. A backing path read from
 * an image is data from a possibly untrusted file, not an instruction: this
 * policy decides whether and where it may be followed.
 */
export interface BackingPolicy {
    /**
     * `open` (default): open the backing chain.
     * `forbid`: refuse to open an image that names a backing file.
     * `ignore`: do not open backing files; ranges the image does not hold read as zeros.
     */
    mode?: 'open' | 'forbid' | 'ignore';
    /**
     * Format of backing files. Default: the format the image records for its
     * backing file, else `raw`. `'probe'` guesses from content, which lets a
     * raw image's contents decide how the host reads files: only for trusted
     * images. A function chooses per level (depth 1 = the top image's backing);
     * returning undefined there means the default for that level.
     */
    format?: string | ((ref: BackingReference, depth: number) => string | undefined);
    /** Deepest chain accepted (number of backing levels below the top image). Default 16. */
    maxDepth?: number;
    /**
     * Confine backing files to these directories: the resolved path and its
     * real path (every symlink followed) must both lie inside one of them, so a
     * symlink inside an allowed directory cannot lead out of it.
     */
    allowedDirs?: string[];
    /**
     * What to do when the backing file's size or mtime differs from what the
     * overlay recorded (UML refuses; this is the default, `refuse`). `accept`
     * opens anyway; `update` rewrites the overlay's header with the new values
     * (needs a writable top image).
     */
    onMismatch?: 'refuse' | 'accept' | 'update';
    /** Use this file as the top image's backing file instead of the stored path (uml_moo -b). */
    overridePath?: string;
    /**
     * The caller's own rule, asked before each backing file is opened (after
     * `allowedDirs`): given the image naming it and the resolved backing path,
     * return undefined to allow it or a reason to refuse (`backing-forbidden`).
     * The blk command uses it for its default: an image may name only files
     * its owner can read.
     */
    approve?: (overlay: string, backing: string) => string | undefined | Promise<string | undefined>;
    /**
     * May backing files be block devices? Default false: a device path read
     * from an image (perhaps a stranger's) is refused with `backing-forbidden`
     * before it is opened. Set it for your own images over a device (UML's
     * COW file on /dev/sdX). The top image, named by the caller, may always be
     * a block device (an `overridePath` device needs this too). FIFOs, sockets,
     * character devices and directories are refused whatever this says.
     */
    allowDevices?: boolean;
}
/** Throws `backing-forbidden` when the policy's `approve` rule refuses `backing` for `overlay`. */
export declare function checkApproval(policy: BackingPolicy, overlay: string, backing: string): Promise<void>;
/**
 * The stored path of `ref` when it is exactly what the image holds; throws
 * `not-supported` when the stored bytes are not valid UTF-8 (see
 * BackingReference.rawPath): opening or rewriting the decoded string would
 * name a different file than the one UML opens.
 */
export declare function exactBackingPath(ref: BackingReference, imagePath: string): string;
/**
 * Resolves a stored backing path: absolute paths stay; relative ones are
 * resolved against the directory of the image that names them, never the
 * process's working directory.
 */
export declare function resolveBackingPath(vfs: Vfs, imagePath: string, stored: string): string;
/** Throws `backing-forbidden` unless `path` (and its real path) lies inside an allowed directory. */
export declare function checkConfinement(vfs: Vfs, policy: BackingPolicy, imagePath: string, path: string): Promise<void>;
/**
 * Refuses a backing file by what kind of node it is, before it is opened: a
 * FIFO, socket, character device or directory is no image (and opening a
 * FIFO would block), and a block device is refused unless the policy allows devices.
 */
export declare function checkBackingNode(policy: BackingPolicy, overlayPath: string, backingPath: string, st: FileStat): void;
