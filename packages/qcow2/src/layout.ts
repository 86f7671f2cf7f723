/**
 * Pure qcow2 layout arithmetic and entry codecs shared by the writer, `create`, `measure` and
 * `check` (docs/interop/qcow2.txt). No I/O here: every function takes numbers and byte arrays.
 */

/** L1/L2 entry bits (standard clusters). */
export const L1E_OFFSET_MASK = 0x00ff_ffff_ffff_fe00n;
export const L2E_OFFSET_MASK = 0x00ff_ffff_ffff_fe00n;
/** Bit 63 of L1 and L2 entries: the cluster's refcount is exactly one (QCOW_OFLAG_COPIED). */
export const OFLAG_COPIED = 1n << 63n;
/** Bit 62 of L2 entries: a compressed cluster (QCOW_OFLAG_COMPRESSED). */
export const OFLAG_COMPRESSED = 1n << 62n;
/** Bit 0 of L2 entries (v3): the cluster reads as zeros (QCOW_OFLAG_ZERO). */
export const OFLAG_ZERO = 1n;

/** Width in bits of one refcount entry for a header's refcount_order (0..6). */
export function refcountBits(refcountOrder: number): number {
  if (!Number.isInteger(refcountOrder) || refcountOrder < 0 || refcountOrder > 6) {
    throw new RangeError(`refcount_order ${refcountOrder} is outside 0..6`);
  }
  return 1 << refcountOrder;
}

/** Largest refcount an entry of this width holds (2^53 - 1 stands in for 64-bit entries). */
export function maxRefcount(refcountOrder: number): number {
  const bits = refcountBits(refcountOrder);
  return bits >= 53 ? Number.MAX_SAFE_INTEGER : 2 ** bits - 1;
}

/** Refcount entries in one refcount block: cluster_size * 8 / refcount_bits. */
export function refcountsPerBlock(clusterBits: number, refcountOrder: number): number {
  return 2 ** (clusterBits + 3 - refcountOrder);
}

/**
 * Entry `index` of a refcount block. Sub-byte widths pack from the least significant bits of each
 * byte, as QEMU's get_refcount_ro0..2; wider ones are big-endian. 64-bit entries above 2^53 come back
 * as a number >= 2^53 (imprecise, but never mistaken for a small count).
 */
export function readRefcount(block: Uint8Array, index: number, refcountOrder: number): number {
  switch (refcountOrder) {
    case 0:
      return (block[index >>> 3]! >>> (index & 7)) & 1;
    case 1:
      return (block[index >>> 2]! >>> (2 * (index & 3))) & 3;
    case 2:
      return (block[index >>> 1]! >>> (4 * (index & 1))) & 15;
    case 3:
      return block[index]!;
    case 4:
      return (block[2 * index]! << 8) | block[2 * index + 1]!;
    case 5:
      return new DataView(block.buffer, block.byteOffset + 4 * index, 4).getUint32(0);
    case 6: {
      const dv = new DataView(block.buffer, block.byteOffset + 8 * index, 8);
      return dv.getUint32(0) * 2 ** 32 + dv.getUint32(4);
    }
    default:
      throw new RangeError(`refcount_order ${refcountOrder} is outside 0..6`);
  }
}

/** Sets entry `index` of a refcount block; `value` must be an integer in 0..maxRefcount(order). */
export function writeRefcount(block: Uint8Array, index: number, refcountOrder: number, value: number): void {
  if (!Number.isSafeInteger(value) || value < 0 || value > maxRefcount(refcountOrder)) {
    throw new RangeError(`refcount ${value} does not fit ${refcountBits(refcountOrder)} bits`);
  }
  switch (refcountOrder) {
    case 0:
    case 1:
    case 2: {
      const bits = 1 << refcountOrder;
      const perByte = 8 / bits;
      const shift = bits * (index % perByte);
      const at = Math.floor(index / perByte);
      const mask = ((1 << bits) - 1) << shift;
      block[at] = (block[at]! & ~mask) | (value << shift);
      return;
    }
    case 3:
      block[index] = value;
      return;
    case 4:
      block[2 * index] = value >>> 8;
      block[2 * index + 1] = value & 0xff;
      return;
    case 5:
      new DataView(block.buffer, block.byteOffset + 4 * index, 4).setUint32(0, value);
      return;
    case 6: {
      const dv = new DataView(block.buffer, block.byteOffset + 8 * index, 8);
      dv.setUint32(0, Math.floor(value / 2 ** 32));
      dv.setUint32(4, value >>> 0);
      return;
    }
    default:
      throw new RangeError(`refcount_order ${refcountOrder} is outside 0..6`);
  }
}

/** Guest clusters one L2 table maps (cluster_size / 8 for standard L2 entries). */
export function l2Entries(clusterBits: number, extendedL2 = false): number {
  return 2 ** (clusterBits - (extendedL2 ? 4 : 3));
}

/** L1 entries needed for a virtual size: ceil(size / (l2Entries * cluster_size)). */
export function l1EntriesFor(size: number, clusterBits: number, extendedL2 = false): number {
  const span = l2Entries(clusterBits, extendedL2) * 2 ** clusterBits;
  return Math.ceil(size / span);
}

/**
 * Compressed-cluster descriptor layout (spec: "Compressed Clusters Descriptor"): x = 62 -
 * (cluster_bits - 8); bits 0..x-1 host offset, bits x..61 the number of additional 512-byte sectors.
 */
export function compressedDescriptorBits(clusterBits: number): { offsetBits: number; sectorBits: number } {
  const offsetBits = 62 - (clusterBits - 8);
  return { offsetBits, sectorBits: 62 - offsetBits };
}

/**
 * QEMU's qcow2_refcount_metadata_size: refcount blocks and refcount table clusters needed to count
 * `clusters` host clusters plus themselves (the fixed point). `generous` adds room for half the
 * table again, as QEMU does when it grows the table during writes.
 */
export function refcountMetadataSize(
  clusters: number,
  clusterSize: number,
  refcountOrder: number,
  generous = false,
): { bytes: number; blocks: number; table: number } {
  const blocksPerTableCluster = clusterSize / 8;
  const perBlock = (clusterSize * 8) / 2 ** refcountOrder;
  let table = 0;
  let blocks = 0;
  let last: number;
  let n = 0;
  let c = clusters;
  let more = generous;
  do {
    last = n;
    blocks = Math.ceil((c + table + blocks) / perBlock);
    table = Math.ceil(blocks / blocksPerTableCluster);
    n = c + blocks + table;
    if (n === last && more) {
      c += Math.ceil(table / 2);
      n = 0;
      more = false;
    }
  } while (n !== last);
  return { bytes: (blocks + table) * clusterSize, blocks, table };
}

/**
 * QEMU's qcow2_calc_prealloc_size: host bytes of a fully allocated image of `size` virtual bytes
 * (header, L2 and L1 tables, refcount structures, data).
 */
export function fullyAllocatedSize(
  size: number,
  clusterSize: number,
  refcountOrder: number,
  extendedL2 = false,
): number {
  const aligned = Math.ceil(size / clusterSize) * clusterSize;
  const l2e = extendedL2 ? 16 : 8;
  let meta = clusterSize;
  let nl2e = aligned / clusterSize;
  nl2e = Math.ceil(nl2e / (clusterSize / l2e)) * (clusterSize / l2e);
  meta += nl2e * l2e;
  let nl1e = (nl2e * l2e) / clusterSize;
  nl1e = Math.ceil(nl1e / (clusterSize / 8)) * (clusterSize / 8);
  meta += nl1e * 8;
  meta += refcountMetadataSize((meta + aligned) / clusterSize, clusterSize, refcountOrder).bytes;
  return meta + aligned;
}

/** Offset mask of refcount table entries (REFT_OFFSET_MASK). */
export const REFT_OFFSET_MASK = 0xffff_ffff_ffff_fe00n;
