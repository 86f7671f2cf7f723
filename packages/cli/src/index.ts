/**
 * @blk/cli as a library: the jobs behind `blk commit`, `blk rebase` and
 * `blk convert`, taking a Vfs (default: the host file system with OS locks),
 * so that programs (and the crash-safety tests, on a simulated disk) run
 * exactly the code the blk command runs. The command adds argument parsing,
 * output, progress lines and signal handling around them.
 */
export { commitImage, type CommitOptions, type CommitResult } from './jobs/commit.js';
export { rebaseImage, type RebaseOptions, type RebaseResult } from './jobs/rebase.js';
export { convertImage, tempNameFor, type ConvertOptions, type ConvertResult } from './jobs/convert.js';
export { CHUNK, type JobOptions, type ProgressEvent } from './jobs/common.js';
export { commitIntoBase } from './jobs/commit.js';
export { benchImage, type BenchOptions, type BenchPlan, type BenchResult } from './jobs/bench.js';
export { ddImage, type DdOptions, type DdResult } from './jobs/dd.js';
