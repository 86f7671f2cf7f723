/**
 * qemu-img measure for qcow2 (QEMU 7.2's qcow2_measure): the fully allocated size is
 * qcow2_calc_prealloc_size (header, L2 and L1 tables, refcount structures, data); the required
 * size is that, less the data clusters the source does not need (all of them with falloc/full).
 */
import { BlockError, supportedPreallocation, type MeasureInput, type MeasureResult } from '@blk/core/portable';
import { MAX_L1_BYTES } from './header.js';
import { fullyAllocatedSize, l2Entries } from './layout.js';
import { parseFormatOptions, QCOW2_PREALLOCATION } from './create.js';

export async function measureQcow2(input: MeasureInput): Promise<MeasureResult> {
  const where = { driver: 'qcow2' as const };
  const o = parseFormatOptions(input.driverOptions, where);
  const prealloc = supportedPreallocation(input.preallocation, QCOW2_PREALLOCATION, where);
  const cs = 2 ** o.clusterBits;
  if (!Number.isSafeInteger(input.size) || input.size < 0) {
    throw new BlockError('invalid-argument', `Invalid image size ${input.size}`, { ...where, field: 'size' });
  }
  const virtual = Math.ceil(input.size / cs) * cs;
  const l2Tables = Math.ceil(virtual / cs / l2Entries(o.clusterBits));
  if (l2Tables * 8 > MAX_L1_BYTES) {
    throw new BlockError('invalid-argument', 'The image size is too large (try using a larger cluster size)', {
      ...where,
      field: 'size',
    });
  }
  // The data a copy writes, cluster-granular (qcow2_measure's block-status walk); none for an empty image.
  let required = input.dataBytes ? await input.dataBytes(cs) : 0;
  if (prealloc === 'falloc' || prealloc === 'full') required = virtual;
  const fullyAllocated = fullyAllocatedSize(virtual, cs, o.refcountOrder);
  const result: MeasureResult = { required: fullyAllocated - virtual + required, fullyAllocated };
  // Persistent bitmaps: shown when both the source (a qcow2 image) and a v3 target support them; blk copies none.
  if (o.version >= 3 && input.sourceFormat === 'qcow2') result.bitmaps = 0;
  return result;
}
