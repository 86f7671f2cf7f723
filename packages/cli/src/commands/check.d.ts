import { type BackingRuleFlags } from '../common.js';
export interface CheckOpts extends BackingRuleFlags {
    format?: string;
    output: 'human' | 'json';
    progress?: boolean;
    quiet?: boolean;
    backingProbe?: boolean;
    /** -r: leaks, or all (leaks and corruptions). */
    repair?: string;
    /** -F: the backing file's format (cow records none). */
    backingFormat?: string;
    /** -U: read the image even while another process writes it (not with -r). */
    forceShare?: boolean;
}
export declare function check(file: string, opts: CheckOpts): Promise<number>;
