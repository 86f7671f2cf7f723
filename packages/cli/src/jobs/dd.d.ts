import { type JobOptions } from './common.js';
export interface DdOptions extends JobOptions {
    /** The input's format (probed when absent). */
    format?: string;
    /** The output's format (default raw). */
    outputFormat?: string;
    /** bs=: the unit of count and skip (default 512). */
    blockSize?: number;
    /** count=: copy at most this many blocks, counted from the input's start (qemu-img's rule). */
    count?: number;
    /** skip=: leave out this many blocks at the input's start. */
    skip?: number;
    /** -U: read an input another process is writing (force-share; its warning goes to onWarning). */
    forceShare?: boolean | undefined;
    /** See ConvertOptions.onTempFile. */
    onTempFile?: (path: string | undefined) => void;
    /** Called with qemu-img's warning when skip goes past the end (the output is then empty). */
    onWarning?: (message: string) => void;
}
export interface DdResult {
    /** Bytes copied (the output's size, before rounding up to whole sectors). */
    size: number;
}
/** The input range qemu-img dd copies: [start, end). */
export declare function ddRange(inputSize: number, o: Pick<DdOptions, 'blockSize' | 'count' | 'skip'>): {
    start: number;
    end: number;
    skipPastEnd: boolean;
};
/** Copies the range of `input` that bs/count/skip select into a new image `output`. */
export declare function ddImage(input: string, output: string, options?: DdOptions): Promise<DdResult>;
