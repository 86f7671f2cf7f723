/**
 * @blk/cli as a library: the jobs behind `blk commit`, `blk rebase` and
 * `blk convert`, taking a Vfs (default: the host file system with OS locks),
 * so that programs (and the crash-safety tests, on a simulated disk) run
 * exactly the code the blk command runs. The command adds argument parsing,
 * output, progress lines and signal handling around them.
 */
export { commitImage, COMMIT_IN_PROGRESS_MTIME } from './jobs/commit.js';
export { rebaseImage } from './jobs/rebase.js';
export { convertImage, tempNameFor } from './jobs/convert.js';
export { CHUNK } from './jobs/common.js';
export { commitIntoBase } from './jobs/commit-base.js';
export { benchImage } from './jobs/bench.js';
export { ddImage } from './jobs/dd.js';
