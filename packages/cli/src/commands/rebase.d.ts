/**
 * blk rebase: qemu-img rebase. The job (safe mode's copy, -u's header-only
 * rewrite, and what an interruption leaves) is in ../jobs/rebase.ts.
 */
import { type BackingRuleFlags } from '../common.js';
export interface RebaseOpts extends BackingRuleFlags {
    format?: string;
    backing: string;
    backingFormat?: string;
    unsafe?: boolean;
    progress?: boolean;
    quiet?: boolean;
    backingProbe?: boolean;
    /** --old-backing-format: the format of the current backing file (cow records none). */
    oldBackingFormat?: string;
}
export declare function rebase(file: string, opts: RebaseOpts): Promise<number>;
