/**
 * blk bench: qemu-img bench. The job is ../jobs/bench.ts; this module checks
 * the options with qemu-img's messages and prints its two lines:
 *   Sending 100 read requests, 4096 bytes each, 4 in parallel (starting at offset 0, step size 4096)
 *   Run completed in 0.012 seconds.
 * (qemu-img 7.2 prints them even with -q; so does blk.)
 */
import { type BackingRuleFlags } from '../common.js';
export interface BenchOpts extends BackingRuleFlags {
    count?: string;
    depth?: string;
    format?: string;
    flushInterval?: string;
    /** false with --no-drain. */
    drain: boolean;
    native?: boolean;
    aio?: string;
    offset?: string;
    pattern?: string;
    bufferSize?: string;
    stepSize?: string;
    cache?: string;
    write?: boolean;
    backingProbe?: boolean;
}
export declare function bench(file: string, opts: BenchOpts): Promise<number>;
