/**
 * The allocation part of the check job (qemu-img check): every run an image
 * holds itself must lie inside its file (data said to be present must be
 * there). The blk command runs it with the driver's own check and the
 * backing-chain checks, and prints the report.
 */
import type { Image } from '@blk/core/portable';
import { checkAborted, EventLoopYielder } from './common.js';

export interface AllocationCheckOptions {
  /** The length of the image's file (the host's stat). */
  fileSize: number;
  /** Look for runs whose data lies past the end of the file (off when the driver checks that itself). */
  checkPastEof: boolean;
  /** Called with the bytes walked so far. */
  onProgress?: ((done: number) => void) | undefined;
  signal?: AbortSignal | undefined;
}

export interface AllocationCheckResult {
  /** The image's size in its sectors. */
  totalClusters: number;
  /** Sectors the image holds itself. */
  allocatedClusters: number;
  corruptions: number;
  problems: string[];
}

/** Walks `image`'s own runs (see AllocationCheckResult). Units: the image's sectors. */
export async function checkAllocation(image: Image, o: AllocationCheckOptions): Promise<AllocationCheckResult> {
  // The image's sectors: its I/O unit (what the deprecated `sectorSize` named; cow: 512 bytes).
  const ss = image.capabilities.limits.requestAlignment;
  const fileSize = o.fileSize;
  const r: AllocationCheckResult = {
    totalClusters: Math.ceil(image.size / ss),
    allocatedClusters: 0,
    corruptions: 0,
    problems: [],
  };
  const yielder = new EventLoopYielder();
  let runs = 0;
  for await (const run of image.map()) {
    checkAborted(o.signal, image.path);
    if (run.depth === 0) {
      const sectors = Math.ceil(run.length / ss);
      r.allocatedClusters += sectors;
      const h = run.hostOffset;
      if (o.checkPastEof && h !== undefined && h + run.length > fileSize) {
        // Sector i holds host bytes [h + i*ss, h + min((i+1)*ss, length)).
        let first = Math.max(0, Math.floor((fileSize - h) / ss));
        if (h + Math.min((first + 1) * ss, run.length) <= fileSize) first += 1;
        const bad = sectors - first;
        if (bad > 0) {
          r.corruptions += bad;
          const s0 = run.start / ss + first;
          r.problems.push(
            `ERROR ${bad === 1 ? `sector ${s0}` : `sectors ${s0}-${s0 + bad - 1}`} (offset ${run.start + first * ss}): `
              + `marked allocated, but the data lies past the end of the file (${fileSize} bytes)`,
          );
        }
      }
    }
    o.onProgress?.(run.start + run.length);
    if (++runs % 1024 === 0) await yielder.yield();
  }
  return r;
}
