import * as fs from 'node:fs';
import { NodeVfs, isBlockError, openImage } from '@blk/images';
import { qcow2Driver, type Qcow2Image } from '../src/index.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { blk, ensureBuilt, hasCommand, tempDir } from '../../cli/test/helpers.js';
import { expectReadsAsQemu, qemuTools } from './qemu-tools.js';

const QEMU = hasCommand('qemu-img') && hasCommand('qemu-io');
const SKIP = 'qemu-img/qemu-io are not installed (apt-get install qemu-utils): the extended L2 tests are skipped';
if (!QEMU) console.warn(SKIP);

let dir: string;
const { p, img, io } = qemuTools(() => dir);

const IMAGES: Record<string, string> = {
  'x64k.qcow2':
    '64 KiB clusters (2 KiB subclusters) over a raw base: partial clusters, zero subclusters plain and allocated, compressed, a second L2 table',
  'x16k.qcow2': '16 KiB clusters (512 B subclusters), no backing file: unallocated subclusters read zeros',
  'x2m.qcow2': '2 MiB clusters (64 KiB subclusters) over a qcow2 backing file',
};

beforeAll(() => {
  if (!QEMU) return;
  ensureBuilt();
  dir = tempDir('qcow2-extl2');
  img('create', '-q', '-f', 'raw', 'base.raw', '300M');
  io('base.raw', 'write -P 0x11 0 8M', 'write -P 0x12 270M 2M');
  img('create', '-q', '-f', 'qcow2', '-o', 'extended_l2=on', '-b', 'base.raw', '-F', 'raw', 'x64k.qcow2');
  io(
    'x64k.qcow2',
    'write -P 0x22 4k 8k', // two subclusters of cluster 0: the rest reads from base.raw (allocated cluster)
    'write -z 64k 6k', // zero subclusters of an unallocated cluster
    'write -P 0x33 130k 100k', // unaligned: partial subclusters copied from base.raw
    'write -P 0x34 1M 64k',
    'write -z 1M 4k', // zero subclusters inside an allocated cluster (with an offset)
    'write -z -u 1040k 2k',
    'write -c -P 0x35 2M 64k', // a compressed cluster
    'write -P 0x36 269M 1M', // past the first L2 table (4096 entries of 64 KiB = 256 MiB)
    'write -z 271M 6k',
    'discard 1048k 2k',
  );
  img('create', '-q', '-f', 'qcow2', '-o', 'extended_l2=on,cluster_size=16k', 'x16k.qcow2', '5M');
  io('x16k.qcow2', 'write -P 0x41 512 1k', 'write -P 0x42 20k 30k', 'write -z 16k 1k', 'write -P 0x43 4M 700');
  img('create', '-q', '-f', 'qcow2', '-b', 'base.raw', '-F', 'raw', 'mid.qcow2');
  io('mid.qcow2', 'write -P 0x51 0 3M');
  img(
    'create',
    '-q',
    '-f',
    'qcow2',
    '-o',
    'extended_l2=on,cluster_size=2M',
    '-b',
    'mid.qcow2',
    '-F',
    'qcow2',
    'x2m.qcow2',
  );
  io('x2m.qcow2', 'write -P 0x52 100k 200k', 'write -z 2M 128k', 'write -P 0x53 4M 64k', 'write -z 4M 64k');
}, 120_000);

afterAll(() => {
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

describe('qcow2 images with extended L2 entries read as qemu-img reads them', () => {
  for (const [name, what] of Object.entries(IMAGES)) {
    it(`${name}: ${what}`, async (ctx) => {
      if (!QEMU) return ctx.skip(SKIP);
      expect(JSON.parse(img('info', '--output=json', name))['format-specific'].data['extended-l2']).toBe(true);
      img('convert', '-q', '-O', 'raw', name, `${name}.q.raw`);
      const want = fs.readFileSync(p(`${name}.q.raw`));
      const image = await openImage(p(name), { readOnly: true });
      try {
        expect(image.info().formatSpecific).toMatchObject({ 'extended-l2': true });
      } finally {
        await image.close();
      }
      // Chunks that cross subcluster, cluster and kind boundaries.
      await expectReadsAsQemu(
        p(name),
        want,
        [
          [0, 300 * 1024],
          [2047, 4098],
          [1040 * 1024 - 100, 20 * 1024],
          [2 * 1024 * 1024 - 3, 70 * 1024],
          [want.length - 1024, 1024],
        ],
        p(`${name}.blk.raw`),
      );
      const m = blk(['map', '--output=json', p(name)]);
      expect(m.stderr).toBe('');
      expect(JSON.parse(m.stdout)).toEqual(JSON.parse(img('map', '--output=json', name)));
    });
  }
});

describe('extended L2 images open read-only', () => {
  it('a writable open is refused, saying so, and the image is untouched', async (ctx) => {
    if (!QEMU) return ctx.skip(SKIP);
    const before = fs.readFileSync(p('x16k.qcow2'));
    const err = await openImage(p('x16k.qcow2'), { readOnly: false }).catch((e: unknown) => e);
    expect(isBlockError(err, 'not-supported'), String(err)).toBe(true);
    expect((err as Error).message).toMatch(/extended L2 entries \(subclusters\) is not supported: they open read-only/);
    expect(fs.readFileSync(p('x16k.qcow2')).equals(before)).toBe(true);
  });
});

describe('blk check refuses extended L2 images rather than misread them', () => {
  it('check and check -r all fail saying so, and leave the file as it was', (ctx) => {
    if (!QEMU) return ctx.skip(SKIP);
    const before = fs.readFileSync(p('x16k.qcow2'));
    const r = blk(['check', p('x16k.qcow2')]);
    expect(r.code).not.toBe(0);
    expect(r.stderr + r.stdout).toMatch(/extended L2 entries \(subclusters\) is not supported/);
    const fix = blk(['check', '-r', 'all', p('x16k.qcow2')]);
    expect(fix.code).not.toBe(0);
    expect(fs.readFileSync(p('x16k.qcow2')).equals(before)).toBe(true);
  });
});

describe('the cluster mapping of an extended entry (for tools)', () => {
  it("mapping(cluster) decodes the 16-byte entry's descriptor: the host cluster qemu-img map shows", async (ctx) => {
    if (!QEMU) return ctx.skip(SKIP);
    const map = JSON.parse(img('map', '--output=json', 'x16k.qcow2')) as Array<{
      start: number;
      offset?: number;
      data: boolean;
    }>;
    const at = map.find((e) => e.start === 20 * 1024 && e.data);
    expect(at?.offset).toBeDefined();
    const storage = await new NodeVfs().open(p('x16k.qcow2'), { readOnly: true });
    const image = (await qcow2Driver.open(storage, { readOnly: true, cache: 'writeback' })) as Qcow2Image;
    try {
      const m = await image.mapping(1); // guest cluster 1: 16 KiB..32 KiB
      expect(m.kind).toBe('normal');
      expect(m.host).toBe(at!.offset! - 4096);
      expect((await image.mapping(100)).kind).toBe('unallocated');
    } finally {
      await image.close();
    }
  });
});

/** Host offset of the first L2 table of `file` (extended entries are 16 bytes). */
function firstL2(b: Buffer): number {
  const l1 = Number(b.readBigUInt64BE(40));
  return Number(b.readBigUInt64BE(l1) & 0x00fffffffffffe00n);
}

describe('corrupt subcluster bitmaps are typed errors', () => {
  it('a subcluster both allocated and zero', async (ctx) => {
    if (!QEMU) return ctx.skip(SKIP);
    const b = fs.readFileSync(p('x16k.qcow2'));
    const l2 = firstL2(b);
    expect(b.readBigUInt64BE(l2) & 0x00fffffffffffe00n).not.toBe(0n); // cluster 0 is allocated
    b.writeUInt32BE(b.readUInt32BE(l2 + 12), l2 + 8); // zero bits := alloc bits
    fs.writeFileSync(p('both.qcow2'), b);
    const image = await openImage(p('both.qcow2'), { readOnly: true });
    const err = await image.readInto(0, new Uint8Array(4096)).catch((e: unknown) => e);
    const status = await image.isAllocated(0, 4096).catch((e: unknown) => e);
    await image.close();
    expect(isBlockError(err, 'invalid-header'), String(err)).toBe(true);
    expect((err as Error).message).toMatch(/both allocated and zero/);
    expect(isBlockError(status, 'invalid-header'), String(status)).toBe(true);
  });

  it('allocated subclusters in a cluster without a host offset', async (ctx) => {
    if (!QEMU) return ctx.skip(SKIP);
    const b = fs.readFileSync(p('x16k.qcow2'));
    const l2 = firstL2(b);
    const entry = 16 * 10; // guest cluster 10 (160 KiB) was never written
    expect(b.readBigUInt64BE(l2 + entry)).toBe(0n);
    b.writeUInt32BE(1, l2 + entry + 12);
    fs.writeFileSync(p('noalloc.qcow2'), b);
    const image = await openImage(p('noalloc.qcow2'), { readOnly: true });
    const err = await image.readInto(160 * 1024, new Uint8Array(512)).catch((e: unknown) => e);
    await image.close();
    expect(isBlockError(err, 'invalid-header'), String(err)).toBe(true);
    expect((err as Error).message).toMatch(/allocated subclusters in an unallocated cluster/);
  });

  it('subclusters smaller than 512 bytes (cluster_bits 13 with extended L2) are refused at open', async (ctx) => {
    if (!QEMU) return ctx.skip(SKIP);
    const b = fs.readFileSync(p('x16k.qcow2'));
    b.writeUInt32BE(13, 20);
    fs.writeFileSync(p('sub256.qcow2'), b);
    const err = await openImage(p('sub256.qcow2'), { readOnly: true }).catch((e: unknown) => e);
    expect(isBlockError(err, 'invalid-header'), String(err)).toBe(true);
    expect((err as Error).message).toMatch(/Unsupported subcluster size: 256/);
  });
});
