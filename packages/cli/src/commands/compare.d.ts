import { type BackingRuleFlags } from '../common.js';
export interface CompareOpts extends BackingRuleFlags {
    format?: string;
    secondFormat?: string;
    strict?: boolean;
    progress?: boolean;
    quiet?: boolean;
    backingProbe?: boolean;
    /** --backing-format: the format of A's backing file (cow records none). */
    backingFormat?: string;
    /** --second-backing-format: the format of B's backing file. */
    secondBackingFormat?: string;
    /** -U: read the images even while another process writes them. */
    forceShare?: boolean;
}
export declare function compare(a: string, b: string, opts: CompareOpts): Promise<number>;
