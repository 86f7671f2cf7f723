import { type IoOpenOptions } from '../io/open-options.js';
import { type BackingRuleFlags } from '../common.js';
export interface IoOpts extends BackingRuleFlags {
    format?: string;
    readOnly?: boolean;
    cmd: string[];
    backingProbe?: boolean;
    snapshot?: boolean;
    nocache?: boolean;
    copyOnRead?: boolean;
    misalign?: boolean;
    nativeAio?: boolean;
    aio?: string;
    cache?: string;
    discard?: string;
    trace?: string;
    forceShare?: boolean;
    object?: string[];
    imageOpts?: boolean;
    /** -F: the backing file's format (cow records none). */
    backingFormat?: string;
}
/** qemu-io's command line, checked in qemu-io's order with its messages; refuses what blk cannot do. */
export declare function ioOpenOptions(opts: IoOpts): IoOpenOptions;
export declare function io(file: string | undefined, opts: IoOpts): Promise<number>;
