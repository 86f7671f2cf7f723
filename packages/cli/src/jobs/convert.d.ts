/**
 * The convert job (blk convert, qemu-img convert with one source): copies an
 * image into a new one of any format, sparse, written under a temporary name
 * (`DST.tmp-XXXXXXXX`) and renamed over DST only once everything is written
 * and flushed. Interrupted at any point, DST is untouched; a failure removes
 * the temporary file (a killed process can leave it behind).
 *
 * What DST is decides how it is written (see target.ts): a symlink is
 * followed (the temporary file goes beside its target); a replaced file keeps
 * its mode and owner; a file with several hard links and a block device are
 * written in place, as qemu-img writes every target, because a rename would
 * split the links or replace the device node. Other node types are refused.
 * A DST that is one of the files the job reads (the source's chain, the -B
 * chain) is refused, and an existing DST is locked before anything is written.
 *
 * Every file-system action goes through the job's Vfs (syncing DST's
 * directory after the rename is the host's business: the blk command does it).
 */
import { type PreallocationMode } from '@blk/core';
import { type JobOptions } from './common.js';
export interface ConvertOptions extends JobOptions {
    /** The source's format (probed when absent). */
    format?: string;
    /** The output's format (default raw). */
    outputFormat?: string;
    /** Options for the output format's driver (e.g. `{ variant: 'v2-qemu-lp64' }`). */
    driverOptions?: Record<string, unknown>;
    /** Space to reserve in the output (qemu-img convert -o preallocation=). */
    preallocation?: PreallocationMode;
    /**
     * Make the output an overlay on this file (a relative name is relative to
     * DST's directory); only data that differs from it is written.
     */
    backing?: string;
    /** Format of `backing` (default raw); recorded in the output when given. */
    backingFormat?: string;
    /** Format of the source's backing file (cow records none; default: recorded, else raw). */
    sourceBackingFormat?: string;
    /** Read the source even while another process writes it (-U, force-share; no conflicting lock). */
    forceShare?: boolean;
    /** Where warnings go (force-share seeing a writer). */
    onWarning?: (message: string) => void;
    /**
     * Aligned all-zero runs at least this long become holes (bytes, a multiple
     * of 512 up to 16 MiB; default 4096); 0 writes every byte.
     */
    sparseSize?: number;
    /**
     * For a host that removes the temporary file when the process is
     * interrupted (the blk command's signal handlers): called with its name
     * right before the job creates it, and with undefined once it has been
     * renamed into place or removed.
     */
    onTempFile?: (path: string | undefined) => void;
    /**
     * -n: DST exists already; write into it in place (no creation, no
     * temporary file). It must be at least as large as the source; its format
     * is `outputFormat` when given, else probed. See convert-existing.ts.
     */
    existingTarget?: boolean;
    /** --target-is-zero (with existingTarget): DST reads as zeros already, so runs of zeros are not written. */
    targetIsZero?: boolean;
    /** -m: chunks in flight, 1 to 16 (default 4). */
    parallel?: number;
    /** -W: let chunks be written out of order (default: each chunk writes after the previous one). */
    outOfOrder?: boolean;
}
export interface ConvertResult {
    /** Virtual size of the output (the source's). */
    size: number;
    /** The temporary name the output was written under before the rename (undefined when written in place). */
    tempPath: string | undefined;
    /** The file written: DST, or the file DST's symlinks lead to. */
    target: string;
    /** How: under a temporary name then renamed over `target`, or in place (-n, hard links, block devices). */
    method: 'rename' | 'in-place';
}
/** -m: the chunks in flight, checked (qemu-img's range and message). */
export declare function copyDepth(options: Pick<ConvertOptions, 'parallel'>): number;
/** -S: checked. */
export declare function sparseSizeOf(options: Pick<ConvertOptions, 'sparseSize'>): number;
export { tempNameFor } from './target.js';
/** Converts `src` into a new image `dst` (replacing it atomically when it exists). */
export declare function convertImage(src: string, dst: string, options?: ConvertOptions): Promise<ConvertResult>;
