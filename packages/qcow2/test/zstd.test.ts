/**
 * zstd-compressed qcow2 clusters: images made by `qemu-img convert -c -o
 * compression_type=zstd` (and `qemu-io -c 'write -c'` into a zstd overlay)
 * read byte for byte as `qemu-img convert -O raw` reads them, through
 * openImage and the spawned `blk convert`; the frame walker cuts exactly one
 * frame from a payload that carries the next cluster's bytes; hostile payloads
 * (truncated, oversize, garbage, dictionaries, huge windows) are typed errors.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import { isBlockError, openImage } from '@blk/images';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ZstdPayloadError, zstdCluster, zstdFrameAt } from '../src/zstd.js';
import { blk, ensureBuilt, hasCommand, tempDir } from '../../cli/test/helpers.js';
import { expectReadsAsQemu, qemuTools } from './qemu-tools.js';

const QEMU = hasCommand('qemu-img') && hasCommand('qemu-io');
const SKIP = 'qemu-img/qemu-io are not installed (apt-get install qemu-utils): the zstd interop tests are skipped';
if (!QEMU) console.warn(SKIP);

let dir: string;
const { p, run, img } = qemuTools(() => dir);

/** Deterministic bytes that compress a little (runs and noise), so payloads have odd lengths. */
function pattern(n: number, seed: number): Buffer {
  const b = Buffer.alloc(n);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    b[i] = (i >> 7) % 3 === 0 ? x & 0xff : (i >> 9) & 0xff;
  }
  return b;
}

const IMAGES: Record<string, string[]> = {
  'z-64k.qcow2': ['-o', 'compression_type=zstd'],
  'z-512.qcow2': ['-o', 'compression_type=zstd,cluster_size=512'],
  'z-2m.qcow2': ['-o', 'compression_type=zstd,cluster_size=2M'],
  'z-ext.qcow2': ['-o', 'compression_type=zstd,extended_l2=on'],
};

beforeAll(() => {
  if (!QEMU) return;
  ensureBuilt();
  dir = tempDir('qcow2-zstd');
  const src = Buffer.alloc(5 * 1024 * 1024 + 512);
  pattern(1536 * 1024, 7).copy(src, 0);
  pattern(300 * 1024, 9).copy(src, 3 * 1024 * 1024 + 4096);
  src.fill(0x5a, 4 * 1024 * 1024, 4 * 1024 * 1024 + 70000);
  fs.writeFileSync(p('src.raw'), src);
  for (const [name, opts] of Object.entries(IMAGES))
    img('convert', '-q', '-c', '-f', 'raw', '-O', 'qcow2', ...opts, 'src.raw', name);
  // write -c into a zstd overlay over a raw backing file: compressed clusters next to data and holes.
  img('create', '-q', '-f', 'qcow2', '-o', 'compression_type=zstd', '-b', 'src.raw', '-F', 'raw', 'z-overlay.qcow2');
  run('qemu-io', [
    '-c',
    'write -c -P 0x66 0 64k',
    '-c',
    'write -c -P 0x67 192k 64k',
    '-c',
    'write -P 0x68 1M 4k',
    'z-overlay.qcow2',
  ]);
}, 120_000);

afterAll(() => {
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

describe('zstd-compressed qcow2 images made by qemu-img read as qemu-img reads them', () => {
  for (const name of [...Object.keys(IMAGES), 'z-overlay.qcow2']) {
    it(`${name}: openImage and blk convert -O raw equal qemu-img convert -O raw`, async (ctx) => {
      if (!QEMU) return ctx.skip(SKIP);
      const info = JSON.parse(img('info', '--output=json', name));
      expect(info['format-specific'].data['compression-type']).toBe('zstd');
      img('convert', '-q', '-O', 'raw', name, `${name}.q.raw`);
      const want = fs.readFileSync(p(`${name}.q.raw`));
      await expectReadsAsQemu(
        p(name),
        want,
        [
          [1000, 5000],
          [65000, 140000],
          [want.length - 513, 513],
        ],
        p(`${name}.blk.raw`),
      );
      const m = blk(['map', '--output=json', p(name)]);
      expect(m.stderr).toBe('');
      expect(JSON.parse(m.stdout)).toEqual(JSON.parse(img('map', '--output=json', name)));
    });
  }

  it('blk info says compression-type zstd, as qemu-img info', (ctx) => {
    if (!QEMU) return ctx.skip(SKIP);
    const r = blk(['info', '--output=json', p('z-64k.qcow2')]);
    expect(r.stderr).toBe('');
    expect(JSON.parse(r.stdout)['format-specific']).toEqual(
      JSON.parse(img('info', '--output=json', 'z-64k.qcow2'))['format-specific'],
    );
  });

  it('a zstd image takes plain writes but no compressed ones (the writer deflates)', async (ctx) => {
    if (!QEMU) return ctx.skip(SKIP);
    fs.copyFileSync(p('z-64k.qcow2'), p('z-w.qcow2'));
    const image = await openImage(p('z-w.qcow2'), { readOnly: false });
    try {
      await image.write(70000, new Uint8Array(5000).fill(0x77));
      const err = await image.write(0, new Uint8Array(65536), { compress: true }).catch((e: unknown) => e);
      expect(isBlockError(err, 'not-supported'), String(err)).toBe(true);
    } finally {
      await image.close();
    }
    expect(spawnSync('qemu-img', ['check', p('z-w.qcow2')]).status).toBe(0);
    img('convert', '-q', '-O', 'raw', 'z-w.qcow2', 'z-w.q.raw');
    const got = fs.readFileSync(p('z-w.q.raw'));
    const want = fs.readFileSync(p('src.raw'));
    want.fill(0x77, 70000, 75000);
    expect(got.equals(want)).toBe(true);
  });

  it('a corrupted zstd payload in an image is an io error naming the cluster', async (ctx) => {
    if (!QEMU) return ctx.skip(SKIP);
    const b = fs.readFileSync(p('z-overlay.qcow2'));
    const l1 = Number(b.readBigUInt64BE(40));
    const l2 = Number(b.readBigUInt64BE(l1) & 0x00fffffffffffe00n);
    const entry = b.readBigUInt64BE(l2);
    expect(entry & (1n << 62n)).not.toBe(0n);
    const host = Number(entry & ((1n << 54n) - 1n));
    expect(b.readUInt32LE(host)).toBe(0xfd2fb528); // a zstd frame starts there
    b.fill(0xee, host + 4, host + 40);
    fs.writeFileSync(p('z-bad.qcow2'), b);
    const image = await openImage(p('z-bad.qcow2'), { readOnly: true });
    const err = await image.readInto(0, new Uint8Array(4096)).catch((e: unknown) => e);
    await image.close();
    expect(isBlockError(err, 'io'), String(err)).toBe(true);
    expect((err as Error).message).toMatch(/guest cluster 0\) does not decompress/);
    expect(((err as Error).cause as Error).name).toBe('ZstdPayloadError');
  });
});

/** One zstd frame of the payload that qemu-img wrote for a cluster, cut from a fresh image. */
function qemuFrame(content: Buffer): Buffer {
  fs.writeFileSync(p('one.raw'), content);
  img('convert', '-q', '-c', '-f', 'raw', '-O', 'qcow2', '-o', 'compression_type=zstd', 'one.raw', 'one.qcow2');
  const b = fs.readFileSync(p('one.qcow2'));
  const l1 = Number(b.readBigUInt64BE(40));
  const l2 = Number(b.readBigUInt64BE(l1) & 0x00fffffffffffe00n);
  const host = Number(b.readBigUInt64BE(l2) & ((1n << 54n) - 1n));
  const frame = zstdFrameAt(b, host);
  return b.subarray(host, host + frame.length);
}

describe('the zstd cluster decoder is bounded and exact', () => {
  it('cuts exactly one frame: trailing bytes (the next frame, junk) are not decoded', (ctx) => {
    if (!QEMU) return ctx.skip(SKIP);
    const content = pattern(65536, 3);
    const frame = qemuFrame(content);
    expect(Buffer.from(zstdCluster(frame, 65536)).equals(content)).toBe(true);
    const withNext = Buffer.concat([frame, frame.subarray(0, 9), Buffer.alloc(300, 0xab)]);
    expect(Buffer.from(zstdCluster(withNext, 65536)).equals(content)).toBe(true);
  });

  it('frames back to back fill one cluster as QEMU reads them; more content than the cluster is refused', (ctx) => {
    if (!QEMU) return ctx.skip(SKIP);
    const content = pattern(65536, 5);
    const frame = qemuFrame(content);
    const two = Buffer.from(zstdCluster(Buffer.concat([frame, frame, Buffer.alloc(100, 0xcd)]), 131072));
    expect(two.subarray(0, 65536).equals(content)).toBe(true);
    expect(two.subarray(65536).equals(content)).toBe(true);
    expect(() => zstdCluster(frame, 32768)).toThrow(/declares 65536 bytes, past the cluster/);
  });

  it('hostile payloads are ZstdPayloadErrors: truncated, oversize, garbage, dictionary, window, reserved', (ctx) => {
    if (!QEMU) return ctx.skip(SKIP);
    const content = pattern(65536, 11);
    const frame = qemuFrame(content);
    const cases: Array<[string, Uint8Array, number, RegExp]> = [
      ['empty', new Uint8Array(0), 65536, /ends after 0/],
      ['truncated inside a block', frame.subarray(0, frame.length - 7), 65536, /truncated/],
      ['truncated header', frame.subarray(0, 5), 65536, /truncated/],
      ['garbage', Buffer.alloc(600, 0x41), 65536, /no zstd frame/],
      ['a cluster smaller than the frame content', frame, 4096, /past the cluster/],
      ['a cluster larger than the frame content (data ends)', frame, 131072, /ends after 65536 of 131072/],
    ];
    // Single segment, a one-byte dictionary id 7, content size 0, an empty last raw block.
    const dict = Buffer.from([0x28, 0xb5, 0x2f, 0xfd, 0x21, 0x07, 0x00, 0x01, 0x00, 0x00]);
    cases.push(['a dictionary', dict, 65536, /needs a dictionary/]);
    const reserved = Buffer.from(frame);
    reserved[4] = (reserved[4] ?? 0) | 0x08;
    cases.push(['the reserved header bit', reserved, 65536, /reserved/]);
    // A multi-segment frame whose window descriptor claims 2^41 bytes: refused before any allocation.
    const window = Buffer.from([0x28, 0xb5, 0x2f, 0xfd, 0x00, 0xf8, 0x01, 0x00, 0x00]);
    cases.push(['a 2 TiB window', window, 65536, /window/]);
    // Block header with the reserved type 3.
    const badBlock = Buffer.from([0x28, 0xb5, 0x2f, 0xfd, 0x20, 0x00, 0x07, 0x00, 0x00]);
    cases.push(['a reserved block type', badBlock, 65536, /reserved zstd block type/]);
    // A valid RLE frame of 128 KiB decoded into a 64 KiB cluster: bounded, no 128 KiB result.
    const rle = Buffer.from([0x28, 0xb5, 0x2f, 0xfd, 0x00, 0x38, 0x03, 0x00, 0x10, 0x61]); // window 128K, RLE 131072 ×0x61, last
    cases.push(['an RLE block past the cluster', rle, 65536, /past the end of the 65536-byte cluster/]);
    for (const [what, payload, size, message] of cases) {
      let err: unknown;
      try {
        zstdCluster(payload, size);
      } catch (e) {
        err = e;
      }
      expect(err, what).toBeInstanceOf(ZstdPayloadError);
      expect((err as Error).message, what).toMatch(message);
    }
    // The same RLE frame decodes into a cluster of its size: the hand-made frames above are well formed.
    expect(zstdCluster(rle, 131072).every((x) => x === 0x61)).toBe(true);
  });
});
