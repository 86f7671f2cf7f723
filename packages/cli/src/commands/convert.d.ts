import { type BackingRuleFlags } from '../common.js';
import { parseCacheMode } from '../jobs/common.js';
export interface ConvertOpts extends BackingRuleFlags {
    format?: string;
    /** -O; raw when absent (then the output is guarded as a probed raw image would be; with -n: DST's format is probed). */
    outputFormat?: string;
    /** false with -n (commander's --no-create). */
    create: boolean;
    targetIsZero?: boolean;
    /** -m */
    parallel?: string;
    /** -W */
    outOfOrder?: boolean;
    options: string[];
    backing?: string;
    backingFormat?: string;
    sparseSize: string;
    progress?: boolean;
    quiet?: boolean;
    backingProbe?: boolean;
    /** -t: cache mode of DST (writeback, the default, flushes; unsafe never does). */
    cache?: string;
    /** --source-backing-format: the format of SRC's backing file (cow records none). */
    sourceBackingFormat?: string;
    /** -U: read SRC even while another process writes it. */
    forceShare?: boolean;
}
export declare function convert(src: string, dst: string, opts: ConvertOpts): Promise<number>;
/** -t CACHE, checked (a usage error names the modes). */
export declare function cacheArg(value: string | undefined): ReturnType<typeof parseCacheMode>;
/** fsync of a directory, so that names created or renamed in it survive a power loss (best effort). */
export declare function syncDirectory(dir: string): void;
