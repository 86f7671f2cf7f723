/**
 * The qcow2 header and its extensions (QEMU docs/interop/qcow2.txt), parsed
 * and checked the way QEMU 7.2's qcow2_do_open checks them, before anything
 * is allocated from a size the file states.
 */
import { BlockError } from '@blk/core/portable';

export const QCOW2_MAGIC = 0x514649fb; // "QFI\xfb"
export const MIN_CLUSTER_BITS = 9;
export const MAX_CLUSTER_BITS = 21;
/** QEMU's QCOW_MAX_L1_SIZE: the active L1 table may not exceed 32 MiB. */
export const MAX_L1_BYTES = 32 * 1024 * 1024;
/** QEMU's QCOW_MAX_REFTABLE_SIZE. */
export const MAX_REFTABLE_BYTES = 8 * 1024 * 1024;
export const MAX_SNAPSHOTS = 65536;
export const MAX_BACKING_NAME = 1023;

export const EXT_END = 0;
export const EXT_BACKING_FORMAT = 0xe2792aca;
export const EXT_FEATURE_TABLE = 0x6803f857;
export const EXT_BITMAPS = 0x23852875;
export const EXT_CRYPTO = 0x0537be77;
export const EXT_DATA_FILE = 0x44415441;

export const INCOMPAT_DIRTY = 1 << 0;
export const INCOMPAT_CORRUPT = 1 << 1;
export const INCOMPAT_DATA_FILE = 1 << 2;
export const INCOMPAT_COMPRESSION = 1 << 3;
export const INCOMPAT_EXTENDED_L2 = 1 << 4;
export const COMPAT_LAZY_REFCOUNTS = 1;
export const AUTOCLEAR_DATA_FILE_RAW = 1 << 1;

/** Names QEMU gives the incompatible bits it knows (used when the file has no feature table). */
const KNOWN_INCOMPAT: Record<number, string> = {
  0: 'dirty bit',
  1: 'corrupt bit',
  2: 'external data file',
  3: 'compression type',
  4: 'extended L2 entries',
};

export interface HeaderExtension {
  type: number;
  /** File offset of the extension's data. */
  offset: number;
  data: Uint8Array;
}

export interface FeatureName {
  /** 0 incompatible, 1 compatible, 2 autoclear. */
  type: number;
  bit: number;
  name: string;
}

export interface Qcow2Header {
  version: 2 | 3;
  backingFileOffset: number;
  backingFileSize: number;
  clusterBits: number;
  clusterSize: number;
  size: number;
  cryptMethod: number;
  l1Size: number;
  l1TableOffset: number;
  refcountTableOffset: number;
  refcountTableClusters: number;
  nbSnapshots: number;
  snapshotsOffset: number;
  /** 64-bit feature words as bigint (bits above 31 matter for unknown-bit refusal). */
  incompatibleFeatures: bigint;
  compatibleFeatures: bigint;
  autoclearFeatures: bigint;
  refcountOrder: number;
  headerLength: number;
  /** 0 deflate (zlib), 1 zstd. */
  compressionType: number;
  extensions: HeaderExtension[];
  featureNames: FeatureName[];
  backingFormat?: string;
  /** The stored backing file name bytes (absent without a backing file). */
  backingName?: Uint8Array;
  dataFile?: string;
}

interface Where {
  path: string;
  driver: 'qcow2';
}

function fail(
  kind: 'invalid-header' | 'truncated' | 'not-supported' | 'unsupported-version',
  message: string,
  where: Where,
  field?: string,
  offset?: number,
): never {
  throw new BlockError(kind, message, {
    ...where,
    ...(field !== undefined ? { field } : {}),
    ...(offset !== undefined ? { offset } : {}),
  });
}

/** A big-endian u64 as a number; an error when it is not a safe integer. */
function u64(dv: DataView, at: number, where: Where, field: string): number {
  const v = dv.getBigUint64(at);
  if (v > BigInt(Number.MAX_SAFE_INTEGER)) fail('invalid-header', `${field} ${v} is too large`, where, field);
  return Number(v);
}

/**
 * QEMU's qcow2_probe: the magic and a version of at least 2 (1 is the older
 * qcow format). Versions past 3 are qcow2's to refuse (`unsupported-version`),
 * never a raw disk.
 */
export function probeQcow2(head: Uint8Array): number {
  if (head.length < 8) return 0;
  const dv = new DataView(head.buffer, head.byteOffset, 8);
  return dv.getUint32(0) === QCOW2_MAGIC && dv.getUint32(4) >= 2 ? 100 : 0;
}

/** The magic and a version this driver reads (2 or 3). */
export function isQcow2(head: Uint8Array): boolean {
  if (head.length < 8) return false;
  const dv = new DataView(head.buffer, head.byteOffset, 8);
  const version = dv.getUint32(4);
  return dv.getUint32(0) === QCOW2_MAGIC && (version === 2 || version === 3);
}

/**
 * Parses the fixed header from `cluster0` (the first cluster of the file, or
 * as much of it as exists, zero-filled) and checks every field QEMU checks at
 * open. `fileSize` bounds every table offset.
 */
export function parseHeader(cluster0: Uint8Array, fileSize: number, where: Where): Qcow2Header {
  if (cluster0.length < 72) fail('truncated', 'the file ends inside the qcow2 header', where);
  const dv = new DataView(cluster0.buffer, cluster0.byteOffset, cluster0.byteLength);
  if (dv.getUint32(0) !== QCOW2_MAGIC) fail('invalid-header', 'not a qcow2 image (bad magic)', where, 'magic');
  const version = dv.getUint32(4);
  if (version !== 2 && version !== 3)
    fail('unsupported-version', `Unsupported qcow2 version ${version}`, where, 'version');
  const clusterBits = dv.getUint32(20);
  if (clusterBits < MIN_CLUSTER_BITS || clusterBits > MAX_CLUSTER_BITS) {
    fail('invalid-header', `Unsupported cluster size: 2^${clusterBits}`, where, 'cluster_bits');
  }
  const clusterSize = 2 ** clusterBits;
  const h: Qcow2Header = {
    version,
    backingFileOffset: u64(dv, 8, where, 'backing_file_offset'),
    backingFileSize: dv.getUint32(16),
    clusterBits,
    clusterSize,
    size: u64(dv, 24, where, 'size'),
    cryptMethod: dv.getUint32(32),
    l1Size: dv.getUint32(36),
    l1TableOffset: u64(dv, 40, where, 'l1_table_offset'),
    refcountTableOffset: u64(dv, 48, where, 'refcount_table_offset'),
    refcountTableClusters: dv.getUint32(56),
    nbSnapshots: dv.getUint32(60),
    snapshotsOffset: u64(dv, 64, where, 'snapshots_offset'),
    incompatibleFeatures: 0n,
    compatibleFeatures: 0n,
    autoclearFeatures: 0n,
    refcountOrder: 4,
    headerLength: 72,
    compressionType: 0,
    extensions: [],
    featureNames: [],
  };
  if (version === 3) {
    if (cluster0.length < 104) fail('truncated', 'the file ends inside the qcow2 v3 header', where);
    h.incompatibleFeatures = dv.getBigUint64(72);
    h.compatibleFeatures = dv.getBigUint64(80);
    h.autoclearFeatures = dv.getBigUint64(88);
    h.refcountOrder = dv.getUint32(96);
    h.headerLength = dv.getUint32(100);
    if (h.headerLength < 104) fail('invalid-header', 'qcow2 header too short', where, 'header_length');
    if (h.headerLength > clusterSize)
      fail('invalid-header', 'qcow2 header exceeds cluster size', where, 'header_length');
    if (h.headerLength > 104) h.compressionType = cluster0[104] ?? 0;
  }
  if (h.backingFileOffset > clusterSize)
    fail('invalid-header', 'Invalid backing file offset', where, 'backing_file_offset');

  // Extensions (v2 images carry them too: QEMU writes the backing format at offset 72 of a v2 overlay).
  const extEnd = h.backingFileOffset !== 0 ? h.backingFileOffset : clusterSize;
  readExtensions(h, cluster0, dv, extEnd, where);

  // Incompatible features: unknown bits refused by name, known ones this slice cannot read refused clearly.
  const known = BigInt(
    INCOMPAT_DIRTY | INCOMPAT_CORRUPT | INCOMPAT_DATA_FILE | INCOMPAT_COMPRESSION | INCOMPAT_EXTENDED_L2,
  );
  const unknown = h.incompatibleFeatures & ~known;
  if (unknown !== 0n) {
    const names: string[] = [];
    for (let bit = 0; bit < 64; bit++) {
      if ((unknown >> BigInt(bit)) & 1n) {
        const named = h.featureNames.find((f) => f.type === 0 && f.bit === bit);
        names.push(named ? named.name : `Unknown incompatible feature: ${bit}`);
      }
    }
    fail('not-supported', `Unsupported qcow2 feature(s): ${names.join(', ')}`, where, 'incompatible_features');
  }
  const incompat = Number(h.incompatibleFeatures);
  if ((incompat & INCOMPAT_COMPRESSION) !== 0) {
    if (h.compressionType === 0)
      fail('invalid-header', 'Compression type incompatible feature bit must not be set', where, 'compression_type');
  } else if (h.compressionType !== 0) {
    fail('invalid-header', 'Compression type incompatible feature bit must be set', where, 'compression_type');
  }
  if (h.compressionType > 1)
    fail('invalid-header', `Unknown compression type ${h.compressionType}`, where, 'compression_type');
  if ((incompat & INCOMPAT_DATA_FILE) !== 0) {
    fail(
      'not-supported',
      'qcow2 images with an external data file are not supported yet',
      where,
      'incompatible_features',
    );
  }
  // Extended L2 entries: 32 subclusters per cluster, each at least 512 bytes (QEMU's check).
  if ((incompat & INCOMPAT_EXTENDED_L2) !== 0 && clusterSize / 32 < 512)
    fail('invalid-header', `Unsupported subcluster size: ${clusterSize / 32}`, where, 'cluster_bits');
  // Autoclear bits are ignored by a reader (the spec), except QEMU's check of data-file-raw (bit 1).
  if ((h.autoclearFeatures & BigInt(AUTOCLEAR_DATA_FILE_RAW)) !== 0n && (incompat & INCOMPAT_DATA_FILE) === 0)
    fail('invalid-header', 'data-file-raw requires a data file', where, 'autoclear_features');
  if (h.cryptMethod !== 0)
    fail(
      'not-supported',
      `encrypted qcow2 images are not supported (crypt_method ${h.cryptMethod})`,
      where,
      'crypt_method',
    );
  if (h.refcountOrder > 6)
    fail('invalid-header', 'Reference count entry width too large; may not exceed 64 bits', where, 'refcount_order');

  // Tables: alignment, QEMU's size limits, and the file's length, before anything is allocated.
  if (h.refcountTableClusters === 0)
    fail('invalid-header', 'Image does not contain a reference count table', where, 'refcount_table_clusters');
  if (h.refcountTableClusters * clusterSize > MAX_REFTABLE_BYTES)
    fail('invalid-header', 'Reference count table too large', where, 'refcount_table_clusters');
  checkTable(h.refcountTableOffset, 1, clusterSize, fileSize, 'refcount_table_offset', 'Reference count table', where);
  if (h.nbSnapshots > MAX_SNAPSHOTS) fail('invalid-header', 'Too many snapshots', where, 'nb_snapshots');
  if (h.nbSnapshots > 0)
    checkTable(h.snapshotsOffset, 1, clusterSize, fileSize, 'snapshots_offset', 'Snapshot table', where);
  if (h.l1Size * 8 > MAX_L1_BYTES) fail('invalid-header', 'Active L1 table too large', where, 'l1_size');
  const l2Entries = clusterSize / ((incompat & INCOMPAT_EXTENDED_L2) !== 0 ? 16 : 8);
  const needed = Math.ceil(h.size / (clusterSize * l2Entries));
  if (needed > MAX_L1_BYTES / 8) fail('invalid-header', 'Image is too big', where, 'size');
  if (h.l1Size < needed) fail('invalid-header', 'L1 table is too small', where, 'l1_size');
  if (h.l1Size > 0)
    checkTable(h.l1TableOffset, h.l1Size * 8, clusterSize, fileSize, 'l1_table_offset', 'Active L1 table', where);

  // Backing file name: inside cluster 0, at most 1023 bytes.
  if (h.backingFileOffset !== 0 && h.backingFileSize !== 0) {
    if (h.backingFileSize > MAX_BACKING_NAME || h.backingFileOffset + h.backingFileSize > clusterSize) {
      fail('invalid-header', 'Backing file name too long', where, 'backing_file_size');
    }
    h.backingName = cluster0.slice(h.backingFileOffset, h.backingFileOffset + h.backingFileSize);
  }
  return h;
}

function checkTable(
  offset: number,
  bytes: number,
  clusterSize: number,
  fileSize: number,
  field: string,
  what: string,
  where: Where,
): void {
  if (offset % clusterSize !== 0) fail('invalid-header', `${what} offset invalid`, where, field, offset);
  if (offset === 0) fail('invalid-header', `${what} offset invalid`, where, field, offset);
  if (offset + bytes > fileSize)
    fail(
      'truncated',
      `${what} at ${offset} (${bytes} bytes) lies past the end of the file (${fileSize} bytes)`,
      where,
      field,
      offset,
    );
}

function readExtensions(h: Qcow2Header, cluster0: Uint8Array, dv: DataView, end: number, where: Where): void {
  let at = h.headerLength;
  while (at < end) {
    // An extension header that runs past the end of the area is refused, an end marker too, as
    // QEMU's qcow2_read_extensions (iotest 080: backing_file_offset 4 bytes past the header).
    if (at + 8 > end) {
      fail('invalid-header', 'Header extension too large', where, 'header_extension', at);
    }
    const type = dv.getUint32(at);
    const len = dv.getUint32(at + 4);
    at += 8;
    if (type === EXT_END) return;
    if (len > end - at)
      fail(
        'invalid-header',
        `Header extension too large (type 0x${type.toString(16)})`,
        where,
        'header_extension',
        at - 8,
      );
    const data = cluster0.slice(at, at + len);
    const ext: HeaderExtension = { type, offset: at, data };
    switch (type) {
      case EXT_BACKING_FORMAT:
        if (len >= 16) fail('invalid-header', `ext_backing_format: len=${len} too large`, where, 'backing_format', at);
        h.backingFormat = latin(data);
        break;
      case EXT_FEATURE_TABLE:
        for (let i = 0; i + 48 <= len; i += 48) {
          h.featureNames.push({ type: data[i] ?? 0, bit: data[i + 1] ?? 0, name: latin(data.subarray(i + 2, i + 48)) });
        }
        break;
      case EXT_DATA_FILE:
        h.dataFile = latin(data);
        break;
      default:
        break;
    }
    h.extensions.push(ext);
    at += (len + 7) & ~7;
  }
}

/** A NUL-terminated (or full-length) ASCII field. */
function latin(bytes: Uint8Array): string {
  const nul = bytes.indexOf(0);
  const b = nul < 0 ? bytes : bytes.subarray(0, nul);
  return new TextDecoder('utf-8').decode(b);
}

export function featureName(h: Qcow2Header, type: number, bit: number): string {
  return (
    h.featureNames.find((f) => f.type === type && f.bit === bit)?.name
    ?? (type === 0 ? (KNOWN_INCOMPAT[bit] ?? `bit ${bit}`) : `bit ${bit}`)
  );
}
