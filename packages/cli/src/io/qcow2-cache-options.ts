/**
 * qcow2's cache options of QEMU (`cache-size`, `l2-cache-size`, `refcount-cache-size`,
 * `l2-cache-entry-size`): blk io takes them so that qemu-io's command lines open, and checks them
 * as QEMU's read_cache_sizes and qcow2_update_options_prepare do, with their messages (iotests
 * 103, 137). They change nothing: blk's qcow2 driver sizes its own metadata caches.
 */

export const QCOW2_CACHE_OPTIONS = ['cache-size', 'l2-cache-size', 'refcount-cache-size', 'l2-cache-entry-size'];

/** QEMU's DEFAULT_L2_CACHE_MAX_SIZE (32 MiB), MIN_REFCOUNT_CACHE_SIZE (4 clusters), MIN_CLUSTER_BITS. */
const DEFAULT_L2_CACHE_MAX = 32 * 1024 * 1024;
const MIN_REFCOUNT_CACHE_CLUSTERS = 4;
const MIN_ENTRY = 512;
const INT_MAX = 2 ** 31 - 1;

/** The image the options would apply to. */
export interface Qcow2CacheTarget {
  clusterSize: number;
  size: number;
  extendedL2: boolean;
}

/** The message QEMU gives for `given` (sizes in bytes) on `image`, or undefined when it accepts them. */
export function checkQcow2CacheOptions(
  given: ReadonlyMap<string, number>,
  image: Qcow2CacheTarget,
): string | undefined {
  const cs = image.clusterSize;
  const combinedSet = given.has('cache-size');
  const l2Set = given.has('l2-cache-size');
  const refcountSet = given.has('refcount-cache-size');
  const combined = given.get('cache-size') ?? 0;
  const l2Max = given.get('l2-cache-size') ?? DEFAULT_L2_CACHE_MAX;
  let refcount = given.get('refcount-cache-size') ?? 0;
  let entry = given.get('l2-cache-entry-size') ?? cs;
  const maxL2Entries = Math.ceil(image.size / cs);
  const maxL2Cache = Math.ceil((maxL2Entries * (image.extendedL2 ? 16 : 8)) / cs) * cs;
  const minRefcount = MIN_REFCOUNT_CACHE_CLUSTERS * cs;
  let l2 = Math.min(maxL2Cache, l2Max);
  if (combinedSet) {
    if (l2Set && refcountSet) {
      return 'cache-size, l2-cache-size and refcount-cache-size may not be set at the same time';
    }
    if (l2Set && l2Max > combined) return 'l2-cache-size may not exceed cache-size';
    if (refcount > combined) return 'refcount-cache-size may not exceed cache-size';
    if (l2Set) refcount = combined - l2;
    else if (refcountSet) l2 = combined - refcount;
    else if (combined >= maxL2Cache + minRefcount) {
      l2 = maxL2Cache;
      refcount = combined - l2;
    } else {
      refcount = Math.min(combined, minRefcount);
      l2 = combined - refcount;
    }
  }
  if (l2 < maxL2Cache && !given.has('l2-cache-entry-size')) entry = Math.min(cs, 4096);
  if (entry < MIN_ENTRY || entry > cs || (entry & (entry - 1)) !== 0) {
    return `L2 cache entry size must be a power of two between ${MIN_ENTRY} and the cluster size (${cs})`;
  }
  // qcow2_update_options_prepare: the sizes in entries must fit an int.
  if (Math.floor(l2 / entry) > INT_MAX) return 'L2 cache size too big';
  if (Math.floor(refcount / cs) > INT_MAX) return 'Refcount cache size too big';
  return undefined;
}
