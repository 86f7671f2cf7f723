/**
 * An image's own data (the depth-0 runs of its map, opened without its
 * backing chain), surveyed and copied by walking the map, never by holding a
 * list of its runs: that list grows with fragmentation without bound (653 MB
 * for a fragmented 4 GiB overlay). The commit jobs survey first (totals, to
 * refuse before writing anything) and walk the map again to copy; the copy
 * is @blk/jobs' copy engine (copyOwnRuns).
 */
import type { Image } from '@blk/core/portable';
import { checkAborted } from './common.js';

export type Range = { start: number; length: number };

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
export async function surveyOwnRuns(
  image: Image,
  guard: readonly Range[],
  signal?: AbortSignal,
): Promise<OwnRunsSurvey> {
  const survey: OwnRunsSurvey = { total: 0, dataEnd: 0, anyRun: false, guarded: [] };
  for await (const run of image.map()) {
    checkAborted(signal, image.path);
    if (run.depth !== 0) continue;
    survey.anyRun = true;
    survey.total += run.length;
    survey.dataEnd = Math.max(survey.dataEnd, run.start + run.length);
    if (touches(run, guard)) survey.guarded.push({ start: run.start, length: run.length });
  }
  return survey;
}

/** `image`'s own runs that reach `ranges` (a probe guard's few bytes: a bounded list). */
export async function ownRunsTouching(image: Image, ranges: readonly Range[]): Promise<Range[]> {
  return (await surveyOwnRuns(image, ranges)).guarded;
}

function touches(run: Range, ranges: readonly Range[]): boolean {
  return ranges.some((r) => run.start < r.start + r.length && r.start < run.start + run.length);
}
