import type { ProgressEvent } from './jobs/common.js';
export interface Progress {
    /** Reports `done` out of `total` units. */
    update(done: number): void;
    /** Draws 100% and ends the line (only if anything was drawn). */
    done(): void;
}
export declare function createProgress(enabled: boolean, total: number, stream?: NodeJS.WriteStream): Progress;
/**
 * A job's `onProgress` callback that draws the line: the bar is created when
 * the copy starts (drawing 0%), updated as it goes and finished at the end.
 */
export declare function progressListener(enabled: boolean): (event: ProgressEvent) => void;
