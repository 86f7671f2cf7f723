import { type JobOptions } from './common.js';
export interface BenchOptions extends JobOptions {
    /** The image's format (probed when absent). */
    format?: string;
    /** Write requests (-w) instead of reads. */
    write?: boolean;
    /** Number of requests (-c; qemu-img's default 75000). */
    count?: number;
    /** Requests in flight at once (-d; default 64). */
    depth?: number;
    /** Bytes per request (-s; default 4096). */
    bufferSize?: number;
    /** Distance between the offsets of consecutive requests (-S; default: bufferSize). */
    step?: number;
    /** Offset of the first request (-o; default 0). */
    offset?: number;
    /** Byte written by a write test (--pattern; default 0). */
    pattern?: number;
    /** Write tests: flush whenever the number of remaining requests is a multiple of this (--flush-interval). */
    flushInterval?: number;
    /** Drain the queue before each flush (default); false: flush with requests in flight (--no-drain). */
    drainOnFlush?: boolean;
    /** Called once the image is open, before the first request, with what will be sent. */
    onStart?: (plan: BenchPlan) => void;
}
export interface BenchPlan {
    write: boolean;
    count: number;
    depth: number;
    bufferSize: number;
    step: number;
    offset: number;
    flushInterval: number;
    imageSize: number;
}
export interface BenchResult extends BenchPlan {
    /** Wall time of the run, from the first request to the last completion. */
    seconds: number;
}
/** Checks what qemu-img checks before opening the image (its messages). */
export declare function benchPlanErrors(o: BenchOptions): string | undefined;
/** Runs the benchmark on `file`. */
export declare function benchImage(file: string, options?: BenchOptions): Promise<BenchResult>;
