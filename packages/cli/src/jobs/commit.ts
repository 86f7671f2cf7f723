/**
 * commit and commit -b on the blk command's host: @blk/jobs' commitImage and
 * commitIntoBase (the jobs and their crash-safety protocol, portable) with
 * the CLI's registry, the host's file system unless a Vfs is given, and the
 * environment's default for --backing-devices.
 */
import {
  commitImage as commitJob,
  commitIntoBase as commitIntoBaseJob,
  type CommitOptions as JobCommitOptions,
  type CommitResult,
} from '@blk/jobs';
import { onHost, type JobOptions } from './common.js';

export type { CommitResult } from '@blk/jobs';

export type CommitOptions = Omit<JobCommitOptions, 'registry' | 'vfs'> & JobOptions;

/** Commits the overlay `file` into its backing file. Re-running it after an interruption finishes the job. */
export function commitImage(file: string, options: CommitOptions = {}): Promise<CommitResult> {
  return commitJob(file, onHost(options));
}

/** Commits the chain above `base` into it (commit -b). */
export function commitIntoBase(file: string, base: string, options: CommitOptions = {}): Promise<CommitResult> {
  return commitIntoBaseJob(file, base, onHost(options));
}
