/**
 * @blk/jobs: the long operations on images (convert, compare, measure and
 * the allocation part of check; commit and rebase still live in the CLI) as
 * portable functions over a registry
 * and a Vfs: no Node built-in, no Buffer, no environment. The blk command
 * parses options and prints; these compute.
 */
export * from './common.js';
export { copyImageData, copyOwnRuns, sparseGranule, targetGranule, type CopyOptions } from './copy.js';
export { planTarget, TargetWriter, tempNameFor, type TargetPlan } from './target.js';
export { convertImage, copyDepth, sparseSizeOf, type ConvertOptions, type ConvertResult } from './convert.js';
export { convertIntoExisting } from './convert-existing.js';
export { compareImages, type CompareOptions, type CompareResult } from './compare.js';
export { dataBytes, measureImage, type MeasureOptions, type MeasureResult } from './measure.js';
export { checkAllocation, type AllocationCheckOptions, type AllocationCheckResult } from './check.js';
