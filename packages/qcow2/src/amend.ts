/**
 * qemu-img amend for qcow2: lazy_refcounts on/off, compat 0.10 -> 1.1 (QEMU's qcow2_upgrade) and
 * 1.1 -> 0.10 when the image has nothing v2 cannot say (16-bit refcounts, zlib, clean, snapshots of
 * the image's size; zero clusters are expanded first, zero-clusters.ts), refcount_bits (QEMU's
 * qcow2_change_refcount_order: new structures in free clusters, refcount-order.ts), size (the open image's resize, as qemu-img
 * resize --shrink), and backing_file/backing_fmt, data_file, data_file_raw as QEMU takes them (only
 * what the image already says). Everything is checked before anything is written (QEMU checks some
 * things half-way and may leave the earlier steps done); then the header is rewritten once, as
 * QEMU's qcow2_update_header writes it (cluster 0, extensions in QEMU's order, unknown ones kept),
 * naming the new refcount structures if there are any, with a resize before it on a downgrade and
 * after it otherwise (QEMU's order).
 */
import { BlockError, writeTo, type OptionSpec, type Storage } from '@blk/core/portable';
import { encodeHeader } from './create.js';
import {
  COMPAT_LAZY_REFCOUNTS,
  EXT_BACKING_FORMAT,
  EXT_BITMAPS,
  EXT_CRYPTO,
  EXT_DATA_FILE,
  EXT_FEATURE_TABLE,
  INCOMPAT_CORRUPT,
  INCOMPAT_DIRTY,
  INCOMPAT_COMPRESSION,
  AUTOCLEAR_DATA_FILE_RAW,
  type Qcow2Header,
} from './header.js';
import { buildRefcountStructures } from './refcount-order.js';
import type { SnapshotEngine } from './snapshot-write.js';
import { readSnapshotTable } from './snapshots.js';
import { expandZeroClusters, findZeroClusters } from './zero-clusters.js';

/** qemu-img amend -f qcow2 -o help's options, in its order (the LUKS encrypt.* ones aside: blk opens no encrypted image). */
export const AMEND_OPTIONS: readonly OptionSpec[] = [
  { name: 'backing_file', type: 'string', valueName: 'str', help: 'File name of a base image' },
  { name: 'backing_fmt', type: 'string', valueName: 'str', help: 'Image format of the base image' },
  { name: 'compat', type: 'string', valueName: 'str', help: 'Compatibility level (v2 [0.10] or v3 [1.1])' },
  { name: 'data_file', type: 'string', valueName: 'str', help: 'File name of an external data file' },
  { name: 'data_file_raw', type: 'bool', help: 'The external data file must stay valid as a raw image' },
  { name: 'lazy_refcounts', type: 'bool', help: 'Postpone refcount updates' },
  {
    name: 'refcount_bits',
    type: 'number',
    valueName: 'num',
    help: 'Width of a reference count entry in bits',
  },
  { name: 'size', type: 'size', help: 'Virtual disk size' },
];

/** qemu-img create -f qcow2's options that amend does not take: qemu-img names them so. */
const CREATE_ONLY = new Set(['cluster_size', 'preallocation', 'compression_type', 'extended_l2', 'encryption']);
/** The LUKS options amend takes (QEMU's qcow2_amend_opts): only for an encrypted image. */
const ENCRYPT_AMEND = new Set(['new-secret', 'old-secret', 'state', 'keyslot', 'iter-time']);

/**
 * The open image's side of an amend, when one is open (the driver's): what it holds in memory goes
 * to the file before the refcount structures are rebuilt from it, and it works on the new ones after.
 */
export interface AmendEngine {
  writeBackAll(): Promise<void>;
  reloadRefcounts(): Promise<void>;
  /** `size=`: as qemu-img resize --shrink (QEMU's amend truncates the image, exact). */
  resize(size: number): Promise<void>;
  /** The image's caches, for expanding zero clusters on a downgrade (zero-clusters.ts). */
  snapshotEngine(): SnapshotEngine;
}

type Where = { path: string; driver: 'qcow2' };

function refuse(kind: 'invalid-argument' | 'not-supported', message: string, where: Where, field?: string): never {
  throw new BlockError(kind, message, { ...where, ...(field ? { field } : {}) });
}

function onOff(v: string, where: Where, key: string): boolean {
  if (v === 'on' || v === 'true') return true;
  if (v === 'off' || v === 'false') return false;
  return refuse('invalid-argument', `Parameter '${key}' expects 'on' or 'off'`, where, key);
}

/** Amends `header` in `storage` (the image must be open for nothing else). Unknown keys are refused. */
export async function amendQcow2(
  storage: Storage,
  header: Qcow2Header,
  options: ReadonlyMap<string, string>,
  engine?: AmendEngine,
): Promise<void> {
  const where: Where = { path: storage.path, driver: 'qcow2' };
  let version = header.version;
  let refcountOrder = header.refcountOrder;
  let newSize = 0;
  let backingFile: string | undefined;
  let backingFormat: string | undefined;
  let lazy = (header.compatibleFeatures & BigInt(COMPAT_LAZY_REFCOUNTS)) !== 0n;
  for (const [key, value] of options) {
    switch (key) {
      case 'compat':
        if (value === '0.10' || value === 'v2') version = 2;
        else if (value === '1.1' || value === 'v3') version = 3;
        else refuse('invalid-argument', `Parameter 'version' does not accept value '${value}'`, where, key);
        break;
      case 'lazy_refcounts':
        lazy = onOff(value, where, key);
        break;
      case 'refcount_bits': {
        if (!/^\d+$/.test(value)) refuse('invalid-argument', "Parameter 'refcount_bits' expects a number", where, key);
        const bits = Number(value);
        if (bits <= 0 || bits > 64 || (bits & (bits - 1)) !== 0)
          refuse('invalid-argument', 'Refcount width must be a power of two and may not exceed 64 bits', where, key);
        refcountOrder = Math.log2(bits);
        break;
      }
      case 'size':
        // Bytes (the CLI converts suffixes); 0 is "not given", as QEMU's amend.
        if (!/^\d+$/.test(value) || !Number.isSafeInteger(Number(value)))
          refuse('invalid-argument', "Parameter 'size' expects a non-negative number below 2^64", where, key);
        newSize = Number(value);
        break;
      case 'backing_file':
        backingFile = value;
        break;
      case 'backing_fmt':
        backingFormat = value;
        break;
      case 'data_file':
        // blk amends no image with an external data file (refused below), so any value is this error.
        refuse('invalid-argument', 'data-file can only be set for images that use an external data file', where, key);
        break;
      case 'data_file_raw':
        if (onOff(value, where, key) && (header.autoclearFeatures & BigInt(AUTOCLEAR_DATA_FILE_RAW)) === 0n)
          refuse('invalid-argument', 'data-file-raw cannot be set on existing images', where, key);
        break;
      default:
        if (CREATE_ONLY.has(key) || (key.startsWith('encrypt.') && !ENCRYPT_AMEND.has(key.slice(8))))
          refuse(
            'invalid-argument',
            `Invalid parameter '${key}': this option is only supported for image creation`,
            where,
            key,
          );
        if (key.startsWith('encrypt.'))
          refuse('invalid-argument', "Can't amend encryption options - encryption not present", where, key);
        refuse('invalid-argument', `Invalid parameter '${key}'`, where, key);
    }
  }
  // QEMU compares both names with the image's (either may be absent) and refuses any difference.
  if (backingFile !== undefined || backingFormat !== undefined) {
    const current = header.backingName !== undefined ? new TextDecoder().decode(header.backingName) : undefined;
    if (backingFile !== current || backingFormat !== header.backingFormat) {
      refuse(
        'invalid-argument',
        "Cannot amend the backing file: you can use 'blk rebase' instead",
        where,
        'backing_file',
      );
    }
  }
  if (version < 3 && lazy) {
    if (options.has('lazy_refcounts'))
      refuse(
        'invalid-argument',
        'Lazy refcounts only supported with compatibility level 1.1 and above (use compat=1.1 or greater)',
        where,
        'lazy_refcounts',
      );
    lazy = false;
  }
  const changesOrder = refcountOrder !== header.refcountOrder;
  // QEMU's order: an upgrade first, then the width, a downgrade last (it needs 16 bits then).
  if (changesOrder && version < 3 && refcountOrder !== 4) {
    refuse(
      'invalid-argument',
      'Refcount widths other than 16 bits require compatibility level 1.1 or above (use compat=1.1 or greater)',
      where,
      'refcount_bits',
    );
  }
  const wasLazy = (header.compatibleFeatures & BigInt(COMPAT_LAZY_REFCOUNTS)) !== 0n;
  const resizes = newSize !== 0 && newSize !== header.size;
  if (resizes && newSize % 512 !== 0)
    refuse('invalid-argument', 'The new size must be a multiple of 512', where, 'size');
  if (resizes && !engine)
    refuse('not-supported', 'changing the size needs the image open (Image.amend)', where, 'size');
  const changesHeader = version !== header.version || lazy !== wasLazy || changesOrder;
  const downgrade = version < header.version;
  let expandZeros = false;
  if (!changesHeader) {
    if (resizes) await engine!.resize(newSize);
    return;
  }
  if ((header.incompatibleFeatures & BigInt(INCOMPAT_DIRTY | INCOMPAT_CORRUPT)) !== 0n) {
    refuse('not-supported', 'the image is dirty or corrupt: run blk check -r all first', where);
  }
  if (header.headerLength > 112 && header.version === 3) {
    refuse(
      'not-supported',
      `the header has ${header.headerLength - 112} bytes of unknown fields, which blk does not rewrite`,
      where,
    );
  }
  if (header.extensions.some((e) => e.type === EXT_CRYPTO || e.type === EXT_DATA_FILE)) {
    refuse('not-supported', 'encrypted images and images with an external data file are not amended', where);
  }
  if (version === 2 && header.version === 3) {
    // qcow2_downgrade's preconditions.
    if (refcountOrder !== 4) refuse('not-supported', 'compat=0.10 requires refcount_bits=16', where, 'compat');
    // zstd is an incompatible feature a downgrade may drop when no cluster is compressed (below).
    const incompatible = header.incompatibleFeatures & ~BigInt(INCOMPAT_COMPRESSION);
    if (incompatible !== 0n)
      refuse(
        'not-supported',
        `Cannot downgrade an image with incompatible features 0x${incompatible.toString(16)} set`,
        where,
        'compat',
      );
    // v2 programs may not know a snapshot's own size or a VM state past 32 bits (the size is the
    // one after `size=`, which QEMU applies before the downgrade).
    const finalSize = resizes ? newSize : header.size;
    for (const sn of (await readSnapshotTable(storage, header, await storage.size())).snapshots) {
      if (sn.vmStateSize > 0xffffffff || sn.diskSize !== finalSize)
        refuse('not-supported', 'Internal snapshots prevent downgrade of image', where, 'compat');
    }
    // What the image holds in memory first: the tables are read from the file.
    await engine?.writeBackAll();
    const zeros = await findZeroClusters(storage, header);
    if (header.compressionType !== 0 && zeros.compressed)
      refuse(
        'not-supported',
        'Cannot downgrade an image with zstd compression type and existing compressed clusters',
        where,
        'compat',
      );
    if (zeros.any) {
      if (!engine)
        refuse('not-supported', 'expanding zero clusters needs the image open (Image.amend)', where, 'compat');
      if (zeros.sharedWithData !== undefined)
        refuse(
          'not-supported',
          `Cannot downgrade: the zero cluster at host offset 0x${zeros.sharedWithData.toString(16)} shares its data with a snapshot, which expanding it would overwrite`,
          where,
          'compat',
        );
      expandZeros = true;
    }
  }
  // QEMU resizes before a downgrade (the image is still v3, whose snapshots keep their own sizes) and
  // after anything else.
  if (resizes && downgrade) await engine!.resize(newSize);
  // Durable before the header says v2 (QEMU's qcow2_downgrade expands them before its header update).
  if (expandZeros) await expandZeroClusters(engine!.snapshotEngine());
  let refcountTable = { tableOffset: header.refcountTableOffset, tableClusters: header.refcountTableClusters };
  if (changesOrder) {
    // Written and flushed past the end of the file; the header below switches to them in one write.
    await engine?.writeBackAll();
    refcountTable = await buildRefcountStructures(storage, header, refcountOrder, where);
  }
  const fields = {
    version,
    clusterBits: header.clusterBits,
    size: header.size,
    l1Size: header.l1Size,
    l1TableOffset: header.l1TableOffset,
    refcountTableOffset: refcountTable.tableOffset,
    refcountTableClusters: refcountTable.tableClusters,
    nbSnapshots: header.nbSnapshots,
    snapshotsOffset: header.snapshotsOffset,
    // A v2 header has no feature words; an upgrade starts them at zero, as qcow2_upgrade.
    incompatibleFeatures: version === 3 ? header.incompatibleFeatures : 0n,
    compatibleFeatures:
      version === 3
        ? (header.compatibleFeatures & ~BigInt(COMPAT_LAZY_REFCOUNTS)) | (lazy ? BigInt(COMPAT_LAZY_REFCOUNTS) : 0n)
        : 0n,
    autoclearFeatures: version === 3 ? header.autoclearFeatures : 0n,
    refcountOrder,
    // A v2 header has no compression type (deflate): the check above found no zstd cluster.
    compressionType: version === 3 ? header.compressionType : 0,
    backingFile: header.backingName,
    backingFormat: header.backingFormat,
    // Bitmaps need v3: a downgrade drops them (their autoclear bit is cleared with the rest).
    unknownExtensions: header.extensions.filter(
      (e) => e.type !== EXT_BACKING_FORMAT && e.type !== EXT_FEATURE_TABLE && (version === 3 || e.type !== EXT_BITMAPS),
    ),
  };
  const cluster0 = encodeHeader(fields, where);
  await writeTo(storage, 0, cluster0);
  await storage.flush?.();
  header.version = version;
  header.compatibleFeatures = fields.compatibleFeatures;
  header.incompatibleFeatures = fields.incompatibleFeatures;
  header.autoclearFeatures = fields.autoclearFeatures;
  header.compressionType = fields.compressionType;
  if (changesOrder) {
    header.refcountOrder = refcountOrder;
    header.refcountTableOffset = refcountTable.tableOffset;
    header.refcountTableClusters = refcountTable.tableClusters;
    await engine?.reloadRefcounts();
  }
  if (resizes && !downgrade) await engine!.resize(newSize);
}
