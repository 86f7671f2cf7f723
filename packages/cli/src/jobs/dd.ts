/**
 * dd on the blk command's host: @blk/jobs' ddImage (the job, portable) with
 * the CLI's registry, the host's file system unless a Vfs is given, and the
 * environment's default for --backing-devices.
 */
import { ddImage as ddJob, type DdOptions as JobDdOptions, type DdResult } from '@blk/jobs';
import { onHost, type JobOptions } from './common.js';

export { ddRange, type DdResult } from '@blk/jobs';

export type DdOptions = Omit<JobDdOptions, 'registry' | 'vfs'> & JobOptions;

/** Copies the range of `input` that bs/count/skip select into a new image `output`. */
export function ddImage(input: string, output: string, options: DdOptions = {}): Promise<DdResult> {
  return ddJob(input, output, onHost(options));
}
