import { type CommitOptions, type CommitResult } from './commit.js';
import type { Vfs } from '@blk/core';
interface Layer {
    path: string;
    /** The format it opened with. */
    format: string;
}
/**
 * The chain from `file` down to BASE: [top, ..., the layer whose backing
 * file BASE is, BASE]. BASE may be named relative to the current directory
 * or, as a backing file is, to the top image's directory.
 */
export declare function chainDownTo(vfs: Vfs, file: string, base: string, options: CommitOptions): Promise<Layer[]>;
/** Commits the chain above `base` into it (see the module comment). */
export declare function commitIntoBase(file: string, base: string, options?: CommitOptions): Promise<CommitResult>;
export {};
