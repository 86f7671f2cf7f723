/**
 * @blk/qcow2: QEMU's qcow2 format (v2 "compat=0.10" and v3 "compat=1.1") for
 * @blk/core. Reads images, their backing files and compressed (deflate)
 * clusters, and writes them (exact refcounts, crash-ordered metadata,
 * zeroing, discard, compressed writes, resize); zstd, extended L2, external
 * data files and encryption are refused with typed errors for now.
 */
import { qcow2Driver } from './driver.js';

export { qcow2Driver };
export default qcow2Driver;
export {
  QCOW2_MAGIC,
  MAX_L1_BYTES,
  MAX_REFTABLE_BYTES,
  isQcow2,
  probeQcow2,
  parseHeader,
  type FeatureName,
  type HeaderExtension,
  type Qcow2Header,
} from './header.js';
export { Qcow2Image, type ClusterKind, type ClusterMapping } from './qcow2-image.js';
export { inflateCluster } from './inflate.js';
export { deflateCluster } from './deflate.js';
export { Refcounts } from './refcount.js';
export { createQcow2, planCreate, parseFormatOptions, encodeHeader, CREATE_OPTIONS } from './create.js';
export { measureQcow2 } from './measure.js';
export { checkQcow2, checkQcow2Storage, type Qcow2CheckResult } from './check.js';
export { readSnapshotTable, type Qcow2Snapshot, type SnapshotTable } from './snapshots.js';
export { findSnapshot } from './driver.js';
export { amendQcow2, AMEND_OPTIONS } from './amend.js';
