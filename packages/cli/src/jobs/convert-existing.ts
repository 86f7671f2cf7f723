/** convert -n: @blk/jobs' convertIntoExisting, on the blk command's host (see convert.ts). */
import { convertImage, type ConvertOptions, type ConvertResult } from './convert.js';

export async function convertIntoExisting(src: string, dst: string, options: ConvertOptions): Promise<ConvertResult> {
  return convertImage(src, dst, { ...options, existingTarget: true });
}
