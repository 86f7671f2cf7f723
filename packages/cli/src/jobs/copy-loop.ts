/**
 * The copy loop of convert and commit is @blk/jobs' copy engine (one engine:
 * it reads each run from the layer that holds it, keeps holes and writes
 * large windows); this module re-exports it for the jobs still in the CLI.
 */
export { copyImageData, type CopyOptions as CopyLoopOptions } from '@blk/jobs';
