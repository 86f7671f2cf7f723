/**
 * rebase on the blk command's host: @blk/jobs' rebaseImage (the job,
 * portable) with the CLI's registry, the host's file system unless a Vfs is
 * given, and the environment's default for --backing-devices.
 */
import { rebaseImage as rebaseJob, type RebaseOptions as JobRebaseOptions, type RebaseResult } from '@blk/jobs';
import { onHost, type JobOptions } from './common.js';

export type { RebaseResult } from '@blk/jobs';

export type RebaseOptions = Omit<JobRebaseOptions, 'registry' | 'vfs'> & JobOptions;

/** Points the overlay `file` at a new backing file, keeping its contents unless `unsafe`. */
export function rebaseImage(file: string, options: RebaseOptions): Promise<RebaseResult> {
  return rebaseJob(file, onHost(options));
}
