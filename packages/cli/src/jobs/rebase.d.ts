import { type JobOptions } from './common.js';
export interface RebaseOptions extends JobOptions {
    /** The overlay's format (probed when absent). */
    format?: string;
    /**
     * The new backing file (a relative name is relative to the overlay's
     * directory, as qemu-img resolves it); '' removes the backing reference.
     */
    backing: string;
    /** The new backing file's format (default raw); recorded in the overlay when given. */
    backingFormat?: string;
    /** Only rewrite the reference (-u); copy no data. */
    unsafe?: boolean;
    /** The format of the overlay's current backing file (cow records none; default: recorded, else raw). */
    oldBackingFormat?: string;
}
export interface RebaseResult {
    /** The new backing file as recorded (undefined when the reference was removed). */
    backingPath: string | undefined;
    /** Bytes copied into the overlay (0 with `unsafe`). */
    copied: number;
}
/** Points the overlay `file` at a new backing file, keeping its contents unless `unsafe`. */
export declare function rebaseImage(file: string, options: RebaseOptions): Promise<RebaseResult>;
