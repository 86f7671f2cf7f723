/**
 * blk dd: qemu-img dd. Parses dd's `key=value` operands with qemu-img's
 * messages; the copy is ../jobs/dd.ts (written under a temporary name,
 * removed if a signal interrupts it). Prints nothing on success, as qemu-img.
 */
import { type BackingRuleFlags } from '../common.js';
export interface DdOpts extends BackingRuleFlags {
    format?: string;
    outputFormat: string;
    backingProbe?: boolean;
    /** -U: read an input another process is writing. */
    forceShare?: boolean;
}
export declare function dd(operands: string[], opts: DdOpts): Promise<number>;
