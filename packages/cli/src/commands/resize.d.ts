import { type BackingRuleFlags } from '../common.js';
export interface ResizeOpts extends BackingRuleFlags {
    format?: string;
    shrink?: boolean;
    preallocation?: string;
    quiet?: boolean;
    backingProbe?: boolean;
    /** -F: the backing file's format (cow records none). */
    backingFormat?: string;
}
/** `SIZE`, `+SIZE` or `-SIZE`: an absolute size, or a change of the current one. */
export declare function parseResizeSize(text: string): {
    sign: '' | '+' | '-';
    bytes: number;
};
export declare function resize(file: string, sizeArg: string, opts: ResizeOpts): Promise<number>;
