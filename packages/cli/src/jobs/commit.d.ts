import { type JobOptions } from './common.js';
export interface CommitOptions extends JobOptions {
    /** The overlay's format (probed when absent). */
    format?: string;
    /** Keep the overlay's data (-d): do not empty it. */
    keep?: boolean;
    /** Commit even if the backing file was modified after the overlay was made. */
    force?: boolean;
    /** The backing file's format (cow records none; default: the recorded format, else raw). */
    backingFormat?: string;
    /** Called with each warning (also returned in the result); the blk command prints them. */
    onWarning?: (message: string) => void;
    /**
     * Makes the names in a directory durable (fsync of the directory; the blk
     * command passes one). Called after the commit journal is created, so that
     * after a power loss the journal is there wherever the mark is.
     */
    syncDirectory?: ((dir: string) => void | Promise<void>) | undefined;
}
export interface CommitResult {
    /** The backing file committed into, as resolved. */
    backingPath: string;
    /** Bytes copied into the backing file. */
    copied: number;
    /** True when the overlay's data was discarded (false with `keep`, with nothing to copy, or when its format cannot discard). */
    emptied: boolean;
    warnings: string[];
}
/** The mtime recorded while a commit is under way. */
export declare const COMMIT_IN_PROGRESS_MTIME = 0;
/** Commits the overlay `file` into its backing file. Re-running it after an interruption finishes the job. */
export declare function commitImage(file: string, options?: CommitOptions): Promise<CommitResult>;
