/**
 * blk amend: qemu-img amend. Which options a format can change in place is
 * its driver's `amend`; this module parses `-o` and opens the image.
 */
import { type BackingRuleFlags } from '../common.js';
export interface AmendOpts extends BackingRuleFlags {
    format?: string;
    options: string[];
    quiet?: boolean;
    backingProbe?: boolean;
    /** -F: the backing file's format (cow records none). */
    backingFormat?: string;
}
export declare function amend(file: string, opts: AmendOpts): Promise<number>;
