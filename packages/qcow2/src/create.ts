/**
 * `create` for qcow2, as qemu-img create -f qcow2 (QEMU 7.2's qcow2_co_create followed by
 * qcow2_co_truncate): the header, a one-cluster refcount table and its first refcount block, then
 * the L1 table and whatever the preallocation mode places, every table where QEMU places it (the
 * allocator is replayed by AllocatorSim), and the header QEMU's qcow2_update_header writes.
 */
import {
  BlockError,
  preallocate,
  supportedPreallocation,
  truncateTo,
  writeTo,
  type DriverCreateOptions,
  type OptionSpec,
  type PreallocationMode,
  type Storage,
} from '@blk/core/portable';
import {
  COMPAT_LAZY_REFCOUNTS,
  EXT_BACKING_FORMAT,
  EXT_DATA_FILE,
  EXT_FEATURE_TABLE,
  INCOMPAT_COMPRESSION,
  MAX_L1_BYTES,
  QCOW2_MAGIC,
  type HeaderExtension,
} from './header.js';
import { AllocatorSim, SimError } from './layout-sim.js';
import { fullyAllocatedSize, l1EntriesFor, l2Entries } from './layout.js';

/** The most preallocated metadata (L2 tables and refcount structures) create lays out in memory. */
const MAX_PREALLOC_METADATA = 512 * 1024 * 1024;

export const QCOW2_PREALLOCATION: readonly PreallocationMode[] = ['off', 'metadata', 'falloc', 'full'];

/** The `-o` options of qemu-img create -f qcow2 that blk implements. */
export const CREATE_OPTIONS: readonly OptionSpec[] = [
  { name: 'size', type: 'size', help: 'Virtual disk size' },
  {
    name: 'compat',
    // A string the driver parses, so a bad value is refused in qemu's words.
    type: 'string',
    default: '1.1',
    valueName: 'str',
    help: 'Compatibility level (v2 [0.10] or v3 [1.1])',
  },
  { name: 'backing_file', type: 'string', valueName: 'str', help: 'File name of a base image' },
  { name: 'backing_fmt', type: 'string', valueName: 'str', help: 'Image format of the base image' },
  {
    name: 'cluster_size',
    type: 'size',
    default: 65536,
    help: 'qcow2 cluster size (a power of two, 512 to 2M)',
  },
  {
    name: 'preallocation',
    type: 'enum',
    values: QCOW2_PREALLOCATION,
    default: 'off',
    valueName: 'str',
    help: 'Preallocation mode (allowed values: off, metadata, falloc, full)',
  },
  { name: 'lazy_refcounts', type: 'bool', default: false, help: 'Postpone refcount updates' },
  {
    name: 'refcount_bits',
    type: 'number',
    default: 16,
    valueName: 'num',
    help: 'Width of a reference count entry in bits (1, 2, 4, 8, 16, 32 or 64)',
  },
  {
    name: 'compression_type',
    type: 'enum',
    values: ['zlib', 'zstd'],
    default: 'zlib',
    valueName: 'str',
    help: 'Compression method used for image cluster compression',
  },
];

/** Format options as parsed from `driverOptions` (defaults as qemu-img's). */
export interface Qcow2FormatOptions {
  version: 2 | 3;
  clusterBits: number;
  refcountOrder: number;
  lazyRefcounts: boolean;
  /** 0 zlib, 1 zstd. */
  compressionType: number;
}

type Where = { path?: string | undefined; driver: 'qcow2' };

function invalid(message: string, where: Where, field?: string): BlockError {
  return new BlockError('invalid-argument', message, { ...where, ...(field ? { field } : {}) });
}

function asBool(v: unknown, where: Where, field: string): boolean {
  if (typeof v === 'boolean') return v;
  if (v === 'on' || v === 'true') return true;
  if (v === 'off' || v === 'false') return false;
  throw invalid(`Parameter '${field}' expects 'on' or 'off'`, where, field);
}

function asInt(v: unknown, where: Where, field: string): number {
  const n = typeof v === 'string' && /^\d+$/.test(v) ? Number(v) : v;
  if (typeof n !== 'number' || !Number.isSafeInteger(n) || n < 0)
    throw invalid(`Parameter '${field}' expects a non-negative number`, where, field);
  return n;
}

/** Parses and cross-checks qcow2 format options, in qemu's words. `known` extra keys are skipped. */
export function parseFormatOptions(
  raw: Record<string, unknown> | undefined,
  where: Where,
  known: readonly string[] = [],
): Qcow2FormatOptions {
  const o = raw ?? {};
  const keys = ['compat', 'cluster_size', 'lazy_refcounts', 'refcount_bits', 'compression_type', ...known];
  for (const k of Object.keys(o)) {
    if (!keys.includes(k)) throw invalid(`Invalid parameter '${k}'`, where, `driverOptions.${k}`);
  }
  let version: 2 | 3 = 3;
  if (o.compat !== undefined) {
    const c = String(o.compat);
    if (c === '0.10' || c === 'v2' || c === '2') version = 2;
    else if (c === '1.1' || c === 'v3' || c === '3') version = 3;
    else throw invalid(`Parameter 'version' does not accept value '${c}'`, where, 'compat');
  }
  let clusterBits = 16;
  if (o.cluster_size !== undefined) {
    const cs = asInt(o.cluster_size, where, 'cluster_size');
    const bits = Math.log2(cs);
    if (!Number.isInteger(bits) || bits < 9 || bits > 21)
      throw invalid('Cluster size must be a power of two between 512 and 2048k', where, 'cluster_size');
    clusterBits = bits;
  }
  const lazyRefcounts = o.lazy_refcounts !== undefined && asBool(o.lazy_refcounts, where, 'lazy_refcounts');
  let refcountOrder = 4;
  if (o.refcount_bits !== undefined) {
    const bits = asInt(o.refcount_bits, where, 'refcount_bits');
    const order = Math.log2(bits);
    if (bits < 1 || bits > 64 || !Number.isInteger(order))
      throw invalid('Refcount width must be a power of two and may not exceed 64 bits', where, 'refcount_bits');
    refcountOrder = order;
  }
  let compressionType = 0;
  if (o.compression_type !== undefined) {
    const t = String(o.compression_type);
    if (t === 'zstd') compressionType = 1;
    else if (t !== 'zlib') throw invalid(`Invalid parameter '${t}'`, where, 'compression_type');
  }
  if (version < 3) {
    if (lazyRefcounts)
      throw invalid(
        'Lazy refcounts only supported with compatibility level 1.1 and above (use compat=1.1 or greater)',
        where,
        'lazy_refcounts',
      );
    if (refcountOrder !== 4)
      throw invalid(
        'Different refcount widths than 16 bits require compatibility level 1.1 or above (use compat=1.1 or greater)',
        where,
        'refcount_bits',
      );
    if (compressionType !== 0)
      throw invalid(
        'Non-zlib compression type is only supported with compatibility level 1.1 and above (use compat=1.1 or greater)',
        where,
        'compression_type',
      );
  }
  return { version, clusterBits, refcountOrder, lazyRefcounts, compressionType };
}

/** The fields qcow2_update_header writes. */
export interface HeaderFields {
  version: 2 | 3;
  clusterBits: number;
  size: number;
  l1Size: number;
  l1TableOffset: number;
  refcountTableOffset: number;
  refcountTableClusters: number;
  nbSnapshots: number;
  snapshotsOffset: number;
  incompatibleFeatures: bigint;
  compatibleFeatures: bigint;
  autoclearFeatures: bigint;
  refcountOrder: number;
  compressionType: number;
  backingFile?: Uint8Array | undefined;
  backingFormat?: string | undefined;
  dataFile?: string | undefined;
  /** Extensions QEMU keeps as it found them (unknown types), in file order. */
  unknownExtensions?: readonly HeaderExtension[];
}

/** QEMU 7.2's feature name table (qcow2_update_header), written into every v3 header. */
const FEATURES: readonly [number, number, string][] = [
  [0, 0, 'dirty bit'],
  [0, 1, 'corrupt bit'],
  [0, 2, 'external data file'],
  [0, 3, 'compression type'],
  [0, 4, 'extended L2 entries'],
  [1, 0, 'lazy refcounts'],
  [2, 0, 'bitmaps'],
  [2, 1, 'raw external data'],
];

const ascii = new TextEncoder();

/** Cluster 0 as qcow2_update_header writes it; throws when the extensions do not fit. */
export function encodeHeader(h: HeaderFields, where: Where): Uint8Array {
  const cs = 2 ** h.clusterBits;
  const buf = new Uint8Array(cs);
  const dv = new DataView(buf.buffer);
  const u64 = (at: number, v: number | bigint) => dv.setBigUint64(at, BigInt(v));
  dv.setUint32(0, QCOW2_MAGIC);
  dv.setUint32(4, h.version);
  dv.setUint32(20, h.clusterBits);
  u64(24, h.size);
  dv.setUint32(36, h.l1Size);
  u64(40, h.l1TableOffset);
  u64(48, h.refcountTableOffset);
  dv.setUint32(56, h.refcountTableClusters);
  dv.setUint32(60, h.nbSnapshots);
  u64(64, h.snapshotsOffset);
  let at = 72;
  if (h.version === 3) {
    u64(72, h.incompatibleFeatures);
    u64(80, h.compatibleFeatures);
    u64(88, h.autoclearFeatures);
    dv.setUint32(96, h.refcountOrder);
    dv.setUint32(100, 112);
    buf[104] = h.compressionType;
    at = 112;
  }
  const add = (type: number, data: Uint8Array) => {
    const padded = (data.length + 7) & ~7;
    if (at + 8 + padded > cs) throw new BlockError('invalid-argument', 'header extensions do not fit', where);
    dv.setUint32(at, type);
    dv.setUint32(at + 4, data.length);
    buf.set(data, at + 8);
    at += 8 + padded;
  };
  if (h.backingFormat !== undefined) add(EXT_BACKING_FORMAT, ascii.encode(h.backingFormat));
  if (h.dataFile !== undefined) add(EXT_DATA_FILE, ascii.encode(h.dataFile));
  // QEMU omits the feature table for clusters of 4 KiB and less (room for the backing file name).
  if (h.version === 3 && cs > 4096) {
    const t = new Uint8Array(48 * FEATURES.length);
    FEATURES.forEach(([type, bit, name], i) => {
      t[48 * i] = type;
      t[48 * i + 1] = bit;
      t.set(ascii.encode(name), 48 * i + 2);
    });
    add(EXT_FEATURE_TABLE, t);
  }
  for (const ext of h.unknownExtensions ?? []) add(ext.type, ext.data);
  add(0, new Uint8Array(0));
  if (h.backingFile !== undefined && h.backingFile.length > 0) {
    if (at + h.backingFile.length > cs || h.backingFile.length > 1023)
      throw new BlockError('invalid-argument', 'Backing file name too long', { ...where, field: 'backing_file' });
    buf.set(h.backingFile, at);
    u64(8, at);
    dv.setUint32(16, h.backingFile.length);
  }
  return buf;
}

/** The image size limit of qcow2_co_create, in qemu's words. */
function checkSize(size: number, clusterBits: number, where: Where): void {
  if (!Number.isSafeInteger(size) || size < 0) throw invalid(`Invalid image size ${size}`, where, 'size');
  if (l1EntriesFor(size, clusterBits) * 8 > MAX_L1_BYTES) {
    throw invalid(
      "The image size is too large for file format 'qcow2' (try using a larger cluster size)",
      where,
      'size',
    );
  }
}

/** What create would lay out: the allocator state and the tables, before anything is written. */
export interface CreatePlan {
  sim: AllocatorSim;
  l1: Uint8Array;
  l1Offset: number;
  header: Uint8Array;
  /** Host range of preallocated data to reserve (falloc/full). */
  data?: { offset: number; length: number; mode: 'falloc' | 'full' };
}

const TWO32 = 2 ** 32;
const COPIED_HI = 0x80000000;
/** QEMU's BDRV_REQUEST_MAX_BYTES. */
const REQUEST_MAX_BYTES = 2 ** 31 - 512;

function setEntry(table: Uint8Array, index: number, offset: number): void {
  const dv = new DataView(table.buffer, table.byteOffset + index * 8, 8);
  dv.setUint32(0, (Math.floor(offset / TWO32) | COPIED_HI) >>> 0);
  dv.setUint32(4, offset >>> 0);
}

function entryOffset(table: Uint8Array, index: number): number {
  const dv = new DataView(table.buffer, table.byteOffset + index * 8, 8);
  const lo = dv.getUint32(4);
  return (dv.getUint32(0) & 0x00ffffff) * TWO32 + (lo - (lo % 512));
}

/** Lays out a new image in memory, replaying QEMU's allocations. */
export function planCreate(
  size: number,
  o: Qcow2FormatOptions,
  prealloc: PreallocationMode,
  backing: { file?: Uint8Array; format?: string } | undefined,
  where: Where,
): CreatePlan {
  checkSize(size, o.clusterBits, where);
  // Preallocated metadata (L2 tables, refcount blocks) is laid out in memory before it is written.
  if (prealloc !== 'off') {
    const cs = 2 ** o.clusterBits;
    const meta = fullyAllocatedSize(size, cs, o.refcountOrder) - Math.ceil(size / cs) * cs;
    if (meta > MAX_PREALLOC_METADATA) {
      throw new BlockError(
        'not-supported',
        `preallocation=${prealloc} of this size needs ${meta} bytes of metadata, more than blk lays out (${MAX_PREALLOC_METADATA}); use a larger cluster size or preallocation=off`,
        { ...where, field: 'preallocation' },
      );
    }
  }
  const sim = new AllocatorSim(o.clusterBits, o.refcountOrder);
  const cs = sim.cs;
  // qcow2_co_create: header at 0, refcount table at cs (entry 0 -> 2cs), an empty refcount block at 2cs.
  sim.reftable = new Array<number>(cs / 8).fill(0);
  sim.reftable[0] = 2 * cs;
  sim.reftableOffset = cs;
  sim.refblocks.set(2 * cs, sim.cluster(2));
  sim.cluster(1);
  sim.wrote(0, 3 * cs);
  sim.writeReftable();
  sim.updateMaxIndex();
  try {
    const first = sim.allocClusters(3 * cs);
    if (first !== 0) throw new SimError('the header clusters were not the first allocation');
    // qcow2_co_truncate: the L1 table (exactly its size), then the preallocation.
    const l1Size = l1EntriesFor(size, o.clusterBits);
    const l1 = new Uint8Array(l1Size * 8);
    let l1Offset = 0;
    if (l1Size > 0) {
      l1Offset = sim.allocClusters(l1.length);
      sim.wrote(l1Offset, l1.length);
    }
    const perL2 = l2Entries(o.clusterBits);
    const ensureL2 = (guest: number): Uint8Array => {
      const l1i = Math.floor(guest / cs / perL2);
      let off = entryOffset(l1, l1i);
      if (off === 0) {
        off = sim.allocClusters(cs);
        sim.clusters.set(off / cs, new Uint8Array(cs));
        sim.wrote(off, cs);
        setEntry(l1, l1i, off);
      }
      return sim.cluster(off / cs);
    };
    const link = (guest: number, host: number, n: number) => {
      const l2 = ensureL2(guest);
      const first = (guest / cs) % perL2;
      for (let i = 0; i < n; i++) setEntry(l2, first + i, host + i * cs);
    };
    let data: CreatePlan['data'];
    if (prealloc === 'metadata' && size > 0) {
      // preallocate_co: qcow2_alloc_host_offset per chunk, each stopping where allocation stops being contiguous.
      let offset = 0;
      let bytes = size;
      let lastHost = 0;
      let lastBytes = 0;
      const chunkMax = Math.floor((2 ** 31 - 1) / cs) * cs;
      while (bytes > 0) {
        const cur = Math.min(bytes, chunkMax);
        let start = offset;
        let remaining = cur;
        let clusterOffset = -1;
        let hostOffset = -1;
        let step = 0;
        for (;;) {
          if (hostOffset < 0 && clusterOffset >= 0) hostOffset = clusterOffset;
          start += step;
          remaining -= step;
          if (clusterOffset >= 0) clusterOffset += step;
          if (remaining === 0) break;
          step = remaining;
          ensureL2(start); // handle_copied: get_cluster_table (the entry is unallocated: no progress)
          let nb = Math.ceil(((start % cs) + step) / cs);
          nb = Math.min(nb, perL2 - ((start / cs) % perL2), Math.floor(REQUEST_MAX_BYTES / cs));
          let host: number;
          if (clusterOffset < 0) host = sim.allocClusters(nb * cs);
          else {
            host = Math.floor(clusterOffset / cs) * cs;
            nb = sim.allocClustersAt(host, nb);
          }
          if (nb === 0) {
            step = 0;
            break;
          }
          link(start - (start % cs), host, nb);
          step = Math.min(step, nb * cs - (start % cs));
          if (clusterOffset < 0) clusterOffset = host + (start % cs);
        }
        const done = cur - remaining;
        lastHost = hostOffset;
        lastBytes = done;
        bytes -= done;
        offset += done;
      }
      if (lastHost + lastBytes > sim.fileLength) sim.fileLength = lastHost + lastBytes;
    } else if ((prealloc === 'falloc' || prealloc === 'full') && size > 0) {
      let oldFileSize = Math.ceil(sim.fileLength / cs) * cs;
      const last = sim.lastCluster(oldFileSize);
      oldFileSize = last >= 0 ? (last + 1) * cs : 0;
      const nbData = Math.ceil(size / cs);
      const nbL2 = Math.ceil(nbData / perL2) + 1;
      const allocStart = sim.refcountArea(oldFileSize, nbData + nbL2, true, 0, 0);
      const got = sim.allocClustersAt(allocStart, nbData);
      if (got !== nbData) throw new SimError('could not allocate the preallocated data area');
      const end = allocStart + nbData * cs;
      const from = Math.min(sim.fileLength, end);
      data = { offset: from, length: end - from, mode: prealloc };
      sim.fileLength = Math.max(sim.fileLength, end);
      let guest = 0;
      let host = allocStart;
      let left = nbData;
      while (left > 0) {
        const n = Math.min(left, perL2 - ((guest / cs) % perL2));
        link(guest, host, n);
        guest += n * cs;
        host += n * cs;
        left -= n;
      }
    }
    const incompat = o.compressionType !== 0 ? BigInt(INCOMPAT_COMPRESSION) : 0n;
    const header = encodeHeader(
      {
        version: o.version,
        clusterBits: o.clusterBits,
        size,
        l1Size,
        l1TableOffset: l1Offset,
        refcountTableOffset: sim.reftableOffset,
        refcountTableClusters: (sim.reftable.length * 8) / cs,
        nbSnapshots: 0,
        snapshotsOffset: 0,
        incompatibleFeatures: incompat,
        compatibleFeatures: o.lazyRefcounts ? BigInt(COMPAT_LAZY_REFCOUNTS) : 0n,
        autoclearFeatures: 0n,
        refcountOrder: o.refcountOrder,
        compressionType: o.compressionType,
        backingFile: backing?.file,
        backingFormat: backing?.format,
      },
      where,
    );
    const plan: CreatePlan = { sim, l1, l1Offset, header };
    if (data) plan.data = data;
    return plan;
  } catch (err) {
    if (err instanceof SimError) throw new BlockError('invalid-argument', err.message, { ...where });
    throw err;
  }
}

/** BlockDriver.create for qcow2. */
export async function createQcow2(storage: Storage, options: DriverCreateOptions): Promise<void> {
  const where: Where = { path: storage.path, driver: 'qcow2' };
  const o = parseFormatOptions(options.driverOptions, where);
  const prealloc = supportedPreallocation(options.preallocation, QCOW2_PREALLOCATION, where);
  let backing: { file?: Uint8Array; format?: string } | undefined;
  if (options.backing) {
    if (prealloc !== 'off') {
      throw new BlockError(
        'not-supported',
        'Backing file and preallocation can only be used at the same time if extended_l2 is on',
        { ...where, field: 'preallocation' },
      );
    }
    backing = { file: ascii.encode(options.backing.path) };
    if (options.backing.format !== undefined) backing.format = options.backing.format;
  }
  const size = Math.ceil(options.size / 512) * 512;
  const plan = planCreate(size, o, prealloc, backing, where);
  await writePlan(storage, plan);
}

/** Writes a plan: metadata clusters in file order, the L1 table, the header, the data area, the length. */
export async function writePlan(storage: Storage, plan: CreatePlan): Promise<void> {
  const { sim } = plan;
  const cs = sim.cs;
  const l1Clusters = new Set<number>();
  for (let c = 0; c * cs < plan.l1.length; c++) l1Clusters.add(plan.l1Offset / cs + c);
  const order = [...sim.clusters.keys()].filter((c) => c !== 0 && !l1Clusters.has(c)).sort((a, b) => a - b);
  for (const c of order) await writeTo(storage, c * cs, sim.clusters.get(c)!);
  if (plan.l1.length > 0) await writeTo(storage, plan.l1Offset, plan.l1);
  await writeTo(storage, 0, plan.header);
  if (plan.data && plan.data.length > 0) await preallocate(storage, plan.data.offset, plan.data.length, plan.data.mode);
  await truncateTo(storage, sim.fileLength);
}
