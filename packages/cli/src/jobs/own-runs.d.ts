/**
 * An image's own data (the depth-0 runs of its map, opened without its
 * backing chain), surveyed and copied by walking the map, never by holding a
 * list of its runs: that list grows with fragmentation without bound (653 MB
 * for a fragmented 4 GiB overlay). The commit jobs survey first (totals, to
 * refuse before writing anything) and walk the map again to copy.
 */
import type { Image } from '@blk/core';
export type Range = {
    start: number;
    length: number;
};
export interface OwnRunsSurvey {
    /** Bytes the image holds itself. */
    total: number;
    /** The end of its last byte of data (0 with none). */
    dataEnd: number;
    /** Whether its map has any run of its own. */
    anyRun: boolean;
    /** Its runs that reach `guard` (a probe guard's few ranges: a bounded list). */
    guarded: Range[];
}
/** Totals of `image`'s own runs, and the few that reach `guard` (see OwnRunsSurvey). */
export declare function surveyOwnRuns(image: Image, guard: readonly Range[]): Promise<OwnRunsSurvey>;
/** `image`'s own runs that reach `ranges` (a probe guard's few bytes: a bounded list). */
export declare function ownRunsTouching(image: Image, ranges: readonly Range[]): Promise<Range[]>;
/**
 * Copies `from`'s own runs into the same offsets of `into`, in `chunk`-sized
 * pieces aligned to `chunk`, several in flight (reading one overlaps writing
 * another), calling `onBytes` with each piece's length once it is written.
 * Every write has finished when it returns; on failure every piece in flight
 * has settled before it throws (the caller may close the images at once).
 * Nothing is flushed: that is the caller's step.
 */
export declare function copyOwnRuns(from: Image, into: Image, chunk: number, onBytes: (n: number) => void): Promise<void>;
