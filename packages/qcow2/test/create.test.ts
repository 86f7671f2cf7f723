/**
 * `create` for qcow2 against the real qemu-img create: for every option qemu-img takes
 * (cluster_size 512..2M, compat 0.10/1.1, lazy_refcounts, refcount_bits 1..64, backing_file and
 * backing_fmt, preallocation off/metadata/falloc/full, compression_type zlib/zstd) the two files
 * agree field by field (header, extensions, L1 and refcount table placement, refcount blocks) and
 * then byte for byte; `qemu-img check` exits 0 on blk's file and `qemu-img info --output=json`
 * says the same of both. Option errors are qemu's. Also `blk create -f qcow2 -o help`.
 */
import * as fs from 'node:fs';
import { createImage, isBlockError } from '@blk/images';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseHeader } from '../src/header.js';
import { blk, ensureBuilt, hasCommand, tempDir } from '../../cli/test/helpers.js';
import { qemuTools } from './qemu-tools.js';

const QEMU = hasCommand('qemu-img');
const SKIP = 'qemu-img is not installed (apt-get install qemu-utils): the qcow2 create interop tests are skipped';
if (!QEMU) console.warn(SKIP);

let dir: string;
const { spawn, p } = qemuTools(() => dir);
const img = (...args: string[]) => spawn('qemu-img', args);

beforeAll(() => {
  if (!QEMU) return;
  ensureBuilt();
  dir = tempDir('qcow2-create');
  fs.writeFileSync(p('base.raw'), new Uint8Array(3 * 1024 * 1024));
}, 120_000);

afterAll(() => {
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

function readAt(fd: number, offset: number, length: number): Uint8Array {
  const out = new Uint8Array(length);
  fs.readSync(fd, out, 0, length, offset);
  return out;
}

/** A digest of bytes, so a difference in a table shows where without printing megabytes. */
function digest(bytes: Uint8Array): string {
  let h = 0x811c9dc5;
  for (let i = 0; i < bytes.length; i++) h = Math.imul(h ^ bytes[i]!, 0x01000193) >>> 0;
  return `${bytes.length}:${h.toString(16)}`;
}

/**
 * Header fields, extensions and the placement and contents of every table (refcount table and
 * blocks, L1, L2), read with positioned reads (preallocated images are large and sparse).
 */
function layout(file: string) {
  const fd = fs.openSync(file, 'r');
  try {
    const fileSize = fs.fstatSync(fd).size;
    const head = readAt(fd, 0, Math.min(fileSize, 2 * 1024 * 1024));
    // This reader refuses zstd images; the header layout is the same with the compression byte cleared.
    const parsed = new Uint8Array(head);
    if (parsed.length > 104 && parsed[104] === 1) {
      parsed[104] = 0;
      parsed[79] = parsed[79]! & ~8;
    }
    const h = parseHeader(parsed, fileSize, { path: file, driver: 'qcow2' });
    const cs = h.clusterSize;
    const rt = readAt(fd, h.refcountTableOffset, h.refcountTableClusters * cs);
    const rdv = new DataView(rt.buffer);
    const reftable: string[] = [];
    for (let i = 0; i < rt.length / 8; i++) {
      const e = Number(rdv.getBigUint64(8 * i));
      if (e !== 0) reftable.push(`${i}:${e}:${digest(readAt(fd, e, cs))}`);
    }
    const l1b = readAt(fd, h.l1TableOffset, h.l1Size * 8);
    const ldv = new DataView(l1b.buffer);
    const l1: string[] = [];
    for (let i = 0; i < h.l1Size; i++) {
      const e = Number(ldv.getBigUint64(8 * i) & 0x00ff_ffff_ffff_fe00n);
      if (e !== 0) l1.push(`${i}:${e}:${digest(readAt(fd, e, cs))}`);
    }
    return {
      fileSize,
      version: h.version,
      clusterBits: h.clusterBits,
      size: h.size,
      l1Size: h.l1Size,
      l1TableOffset: h.l1TableOffset,
      refcountTableOffset: h.refcountTableOffset,
      refcountTableClusters: h.refcountTableClusters,
      incompatible: h.incompatibleFeatures,
      compatible: h.compatibleFeatures,
      autoclear: h.autoclearFeatures,
      refcountOrder: h.refcountOrder,
      headerLength: h.headerLength,
      compressionType: head[104],
      extensions: h.extensions.map((e) => `${e.type.toString(16)}@${e.offset}+${e.data.length}`),
      backing: h.backingName ? new TextDecoder().decode(h.backingName) : undefined,
      backingFormat: h.backingFormat,
      headerCluster: digest(head.subarray(0, cs)),
      reftable,
      l1,
    };
  } finally {
    fs.closeSync(fd);
  }
}

/** Byte-for-byte equality of two (small) files. */
function sameBytes(a: string, b: string): boolean {
  return Buffer.compare(fs.readFileSync(a), fs.readFileSync(b)) === 0;
}

function info(file: string): unknown {
  const r = img('info', '--output=json', file);
  expect(r.status).toBe(0);
  const j = JSON.parse(r.stdout) as Record<string, unknown>;
  delete j.filename;
  delete j['actual-size'];
  if (j['backing-filename'] !== undefined) delete j['full-backing-filename'];
  return j;
}

/** [size, -o options]: every option qemu-img create -f qcow2 takes, and the allocator's corners. */
const VARIANTS: [string, string][] = [
  ['1G', ''],
  ['0', ''],
  ['1234567', ''],
  ['1G', 'cluster_size=512'],
  ['1G', 'cluster_size=2M'],
  ['1G', 'compat=0.10'],
  ['1G', 'compat=v2'],
  ['1G', 'compat=v3,refcount_bits=1'],
  ['1G', 'refcount_bits=2,cluster_size=1024'],
  ['1G', 'refcount_bits=64'],
  ['1G', 'refcount_bits=8,cluster_size=512'],
  ['1G', 'lazy_refcounts=on'],
  ['100G', ''],
  ['300G', 'cluster_size=4096'],
  ['1G', 'compression_type=zstd'],
  ['16M', 'preallocation=metadata'],
  ['16M', 'preallocation=falloc'],
  ['4M', 'preallocation=full'],
  ['3G', 'preallocation=metadata,cluster_size=2M'],
  ['3M', 'preallocation=metadata,cluster_size=512'],
  ['3M', 'preallocation=falloc,cluster_size=512,refcount_bits=1'],
  ['2M', 'preallocation=full,cluster_size=1024,refcount_bits=2'],
];

/** `-o` string → createImage's options (what the CLI's option parser hands the driver). */
function apiOptions(o: string): {
  driverOptions: Record<string, unknown>;
  preallocation?: 'off' | 'metadata' | 'falloc' | 'full';
} {
  const driverOptions: Record<string, unknown> = {};
  let preallocation: 'off' | 'metadata' | 'falloc' | 'full' | undefined;
  for (const kv of o.split(',').filter(Boolean)) {
    const [k, v] = kv.split('=') as [string, string];
    if (k === 'preallocation') preallocation = v as typeof preallocation;
    else if (k === 'cluster_size') driverOptions[k] = v.endsWith('M') ? Number(v.slice(0, -1)) * 2 ** 20 : Number(v);
    else if (k === 'refcount_bits') driverOptions[k] = Number(v);
    else if (k === 'lazy_refcounts') driverOptions[k] = v === 'on';
    else driverOptions[k] = v;
  }
  return preallocation ? { driverOptions, preallocation } : { driverOptions };
}

const SIZES: Record<string, number> = { '0': 0, '1234567': 1234567 };
function bytesOf(s: string): number {
  if (SIZES[s] !== undefined) return Math.ceil(SIZES[s] / 512) * 512;
  const n = Number(s.slice(0, -1));
  return n * 2 ** { M: 20, G: 30, T: 40 }[s.slice(-1) as 'M' | 'G' | 'T'];
}

describe.skipIf(!QEMU)('blk creates qcow2 images as qemu-img create does', () => {
  it.each(VARIANTS)('size %s, -o %s: same header, tables and bytes; qemu-img check 0', async (size, opts) => {
    const name = `${size}-${opts.replace(/[=,]/g, '_') || 'default'}`;
    const q = p(`${name}.q.qcow2`);
    const b = p(`${name}.b.qcow2`);
    expect(img('create', '-q', '-f', 'qcow2', ...(opts ? ['-o', opts] : []), q, size).status).toBe(0);
    await createImage(b, { format: 'qcow2', size: bytesOf(size), overwrite: true, ...apiOptions(opts) });
    expect(layout(b)).toEqual(layout(q));
    // Every byte too, where the file is small enough to read whole (the large ones are sparse data).
    if (fs.statSync(q).size <= 80 * 1024 * 1024) expect(sameBytes(b, q)).toBe(true);
    const check = img('check', b);
    expect(check.stdout).toContain('No errors were found on the image.');
    expect(check.status).toBe(0);
    expect(info(b)).toEqual(info(q));
    fs.rmSync(q);
    fs.rmSync(b);
  });

  it('blk create -f qcow2 with -b/-F (compat 1.1 and 0.10, absolute names) writes what qemu-img writes', () => {
    for (const compat of ['1.1', '0.10']) {
      const q = p(`ov-${compat}.q.qcow2`);
      const b = p(`ov-${compat}.b.qcow2`);
      const base = p('base.raw');
      expect(img('create', '-q', '-f', 'qcow2', '-o', `compat=${compat}`, '-b', base, '-F', 'raw', q).status).toBe(0);
      const r = blk(['create', '-q', '-f', 'qcow2', '-o', `compat=${compat}`, '-b', base, '-F', 'raw', b]);
      expect(r.stderr).toBe('');
      expect(r.code).toBe(0);
      expect(layout(b)).toEqual(layout(q));
      expect(sameBytes(b, q)).toBe(true);
      expect(img('check', b).status).toBe(0);
      expect(info(b)).toEqual(info(q));
    }
  });

  it('blk create -f qcow2 -o cluster_size=4k,refcount_bits=4 FILE SIZE matches qemu-img, spawned', () => {
    const q = p('cli.q.qcow2');
    const b = p('cli.b.qcow2');
    expect(img('create', '-q', '-f', 'qcow2', '-o', 'cluster_size=4k,refcount_bits=4', q, '300M').status).toBe(0);
    const r = blk(['create', '-q', '-f', 'qcow2', '-o', 'cluster_size=4k,refcount_bits=4', b, '300M']);
    expect(r.code).toBe(0);
    expect(sameBytes(b, q)).toBe(true);
  });

  it('blk create -f qcow2 -o help lists the driver-declared options without a file name', () => {
    const r = blk(['create', '-f', 'qcow2', '-o', 'help']);
    expect(r.code).toBe(0);
    for (const key of [
      'cluster_size',
      'compat',
      'lazy_refcounts',
      'refcount_bits',
      'preallocation',
      'compression_type',
    ]) {
      expect(r.stdout).toMatch(new RegExp(`^  ${key}=`, 'm'));
    }
    expect(blk(['create', '-f', 'qcow2']).code).not.toBe(0);
  });

  it.each([
    ['compat=0.10,lazy_refcounts=on', 'Lazy refcounts only supported with compatibility level 1.1'],
    ['compat=0.10,refcount_bits=8', 'Different refcount widths than 16 bits require compatibility level 1.1'],
    ['refcount_bits=3', 'Refcount width must be a power of two and may not exceed 64 bits'],
    ['refcount_bits=128', 'Refcount width must be a power of two and may not exceed 64 bits'],
    ['cluster_size=256', 'Cluster size must be a power of two between 512 and 2048k'],
    ['cluster_size=4M', 'Cluster size must be a power of two between 512 and 2048k'],
    ['cluster_size=3000', 'Cluster size must be a power of two between 512 and 2048k'],
    ['compat=0.9', "Parameter 'version' does not accept value '0.9'"],
  ])('-o %s is refused as qemu-img refuses it', (opts, message) => {
    const q = img('create', '-q', '-f', 'qcow2', '-o', opts, p('refused.q'), '1G');
    expect(q.status).not.toBe(0);
    expect(q.stderr).toContain(message);
    const r = blk(['create', '-q', '-f', 'qcow2', '-o', opts, p('refused.b'), '1G']);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain(message);
    expect(fs.existsSync(p('refused.b'))).toBe(false);
  });

  it('refuses preallocated metadata it would have to hold above 512 MiB, creating nothing', async () => {
    const err = await createImage(p('huge.qcow2'), {
      format: 'qcow2',
      size: 40 * 2 ** 40,
      preallocation: 'metadata',
    }).catch((e: unknown) => e);
    expect(isBlockError(err) && err.kind).toBe('not-supported');
    expect(fs.existsSync(p('huge.qcow2'))).toBe(false);
  });

  it('refuses sizes qemu-img refuses, and a backing file with preallocation', async () => {
    const big = await createImage(p('big.qcow2'), {
      format: 'qcow2',
      size: 2 ** 40,
      driverOptions: { cluster_size: 512 },
    }).catch((e: unknown) => e);
    expect(isBlockError(big) && big.message).toContain('The image size is too large');
    expect(img('create', '-f', 'qcow2', '-o', 'cluster_size=512', p('big.q'), '1T').stderr).toContain(
      'The image size is too large',
    );
    const pre = blk([
      'create',
      '-q',
      '-f',
      'qcow2',
      '-o',
      'preallocation=metadata',
      '-b',
      p('base.raw'),
      '-F',
      'raw',
      p('pre.b'),
    ]);
    expect(pre.code).not.toBe(0);
    expect(pre.stderr).toContain(
      'Backing file and preallocation can only be used at the same time if extended_l2 is on',
    );
  });
});
