/**
 * @blk/jobs: the long operations on images (convert, commit, rebase, dd,
 * compare, measure and the allocation part of check) as portable functions
 * over a registry and a Vfs: no Node built-in, no Buffer, no environment.
 * Each takes an AbortSignal. The blk command parses options, wires signals
 * and prints; these compute.
 */
export * from './common.js';
export { copyImageData, copyOwnRuns, sparseGranule, targetGranule, WRITE_BEHIND, type CopyOptions } from './copy.js';
export { planTarget, TargetWriter, tempNameFor, type TargetPlan } from './target.js';
export { convertImage, copyDepth, sparseSizeOf, type ConvertOptions, type ConvertResult } from './convert.js';
export { convertIntoExisting } from './convert-existing.js';
export { compareImages, type CompareOptions, type CompareResult } from './compare.js';
export { dataBytes, measureImage, type MeasureOptions, type MeasureResult } from './measure.js';
export { checkAllocation, type AllocationCheckOptions, type AllocationCheckResult } from './check.js';
export {
  commitImage,
  commitLinkChange,
  type CommitOptions,
  type CommitResult,
  type LinkChange,
} from './commit.js';
export { chainDownTo, commitIntoBase } from './commit-base.js';
export {
  commitFiles,
  journalMatches,
  journalPath,
  JOURNAL_SUFFIX,
  readJournal,
  removeJournal,
  writeJournal,
  type CommitFiles,
  type CommitJournal,
  type JournalFile,
} from './commit-journal.js';
export { ownRunsTouching, surveyOwnRuns, type OwnRunsSurvey, type Range } from './own-runs.js';
export { rebaseImage, type RebaseOptions, type RebaseResult } from './rebase.js';
export { ddImage, ddRange, type DdOptions, type DdResult } from './dd.js';
