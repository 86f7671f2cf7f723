/**
 * The convert job on the blk command's host: @blk/jobs' convertImage (the
 * job itself, portable) with the host's registry and file system (OS
 * advisory locks) unless a Vfs is given, and the host's default for
 * --backing-devices (the environment, read here, not in the job).
 */
import { convertImage as convertJob, type ConvertOptions as JobConvertOptions, type ConvertResult } from '@blk/jobs';
import { backingDevicesAllowed } from '../backing-devices.js';
import { jobVfs, type JobOptions } from './common.js';
import { registry } from '../images.js';

export { copyDepth, sparseSizeOf, tempNameFor, type ConvertResult } from '@blk/jobs';

export type ConvertOptions = Omit<JobConvertOptions, 'registry' | 'vfs'> & JobOptions;

/** Converts `src` into a new image `dst` (replacing it atomically when it exists), or into DST itself with -n. */
export async function convertImage(src: string, dst: string, options: ConvertOptions = {}): Promise<ConvertResult> {
  return convertJob(src, dst, {
    ...options,
    registry,
    vfs: jobVfs(options),
    backingDevices: options.backingDevices ?? backingDevicesAllowed(),
  });
}
