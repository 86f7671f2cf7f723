/**
 * blk commit: qemu-img commit / uml_moo -d. The job (and its crash-safety
 * protocol) is in ../jobs/commit.ts; this module maps the options and prints.
 */
import { type BackingRuleFlags } from '../common.js';
export interface CommitOpts extends BackingRuleFlags {
    format?: string;
    keep?: boolean;
    /** -b: the image further down the chain to commit into (implies keep, as qemu-img's -b implies -d). */
    base?: string;
    progress?: boolean;
    quiet?: boolean;
    force?: boolean;
    backingProbe?: boolean;
    /** -F: the backing file's format (cow records none). */
    backingFormat?: string;
    /** -t: cache mode of the images written (writeback, the default, flushes; unsafe never does). */
    cache?: string;
}
export declare function commit(file: string, opts: CommitOpts): Promise<number>;
