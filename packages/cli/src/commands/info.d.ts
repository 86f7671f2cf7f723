import { type BackingRuleFlags } from '../common.js';
export interface InfoOpts extends BackingRuleFlags {
    format?: string;
    output: 'human' | 'json';
    backingChain?: boolean;
    backingProbe?: boolean;
    /** -F: the backing file's format (cow records none). */
    backingFormat?: string;
    /** -U: read the image even while another process writes it. */
    forceShare?: boolean;
}
export declare function info(file: string, opts: InfoOpts): Promise<number>;
