import * as fs from 'node:fs';
import { NodeVfs, isBlockError, openImage } from '@blk/images';
import { qcow2Driver } from '../src/index.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { blk, ensureBuilt, hasCommand, tempDir } from '../../cli/test/helpers.js';
import { expectReadsAsQemu, qemuTools } from './qemu-tools.js';

const QEMU = hasCommand('qemu-img') && hasCommand('qemu-io');
const SKIP = 'qemu-img/qemu-io are not installed (apt-get install qemu-utils): the qcow2 interop tests are skipped';
if (!QEMU) console.warn(SKIP);

let dir: string;
const { p, img, io } = qemuTools(() => dir);

/** The test images: name → what it exercises. */
const IMAGES: Record<string, string> = {
  'v2-64k.qcow2': 'compat=0.10, 64 KiB clusters, raw backing file (-F raw), data',
  'v3-512.qcow2': 'compat=1.1, 512 B clusters, qcow2 backing file (-F qcow2), unaligned data, zero clusters',
  'v3-2m.qcow2':
    'compat=1.1, 2 MiB clusters, no backing file, partial last cluster, zero and preallocated-zero clusters',
  'v2-zero.qcow2': 'compat=0.10 over a backing file, write -z (v2 has no zero flag: qemu writes zeros)',
  'comp.qcow2': 'qemu-img convert -c: every cluster compressed (deflate)',
  'comp-512.qcow2': 'qemu-img convert -c with 512 B clusters: payloads share sectors',
  'comp-overlay.qcow2': 'write -c into an overlay: compressed clusters over a backing file',
};

beforeAll(() => {
  if (!QEMU) return;
  ensureBuilt();
  dir = tempDir('qcow2');
  img('create', '-q', '-f', 'raw', 'base.raw', '4M');
  io('base.raw', 'write -P 0x11 0 4M');
  img('create', '-q', '-f', 'qcow2', '-o', 'compat=0.10', '-b', 'base.raw', '-F', 'raw', 'v2-64k.qcow2');
  io('v2-64k.qcow2', 'write -P 0x22 64k 100k', 'write -P 0x23 2M 64k');
  img('create', '-q', '-f', 'qcow2', '-o', 'cluster_size=512', '-b', 'v2-64k.qcow2', '-F', 'qcow2', 'v3-512.qcow2');
  io('v3-512.qcow2', 'write -P 0x33 1000 3000', 'write -z 1M 128k', 'write -P 0x34 3M 1536');
  img('create', '-q', '-f', 'qcow2', '-o', 'cluster_size=2M', 'v3-2m.qcow2', '9437696'); // 9 MiB + 512
  io(
    'v3-2m.qcow2',
    'write -P 0x44 3M 1M',
    'write -z 0 2M',
    'write -P 0x45 6M 512',
    'write -z 6M 2M',
    'write -P 0x46 8M 512',
  );
  img('create', '-q', '-f', 'qcow2', '-o', 'compat=0.10', '-b', 'base.raw', '-F', 'raw', 'v2-zero.qcow2');
  io('v2-zero.qcow2', 'write -z 64k 64k', 'write -P 0x55 1M 4k');
  img('convert', '-q', '-c', '-O', 'qcow2', 'v3-512.qcow2', 'comp.qcow2');
  img('convert', '-q', '-c', '-O', 'qcow2', '-o', 'cluster_size=512', 'v3-2m.qcow2', 'comp-512.qcow2');
  img('create', '-q', '-f', 'qcow2', '-b', 'base.raw', '-F', 'raw', 'comp-overlay.qcow2');
  io('comp-overlay.qcow2', 'write -c -P 0x66 0 64k', 'write -c -P 0x67 128k 64k', 'write -P 0x68 256k 64k');
}, 120_000);

afterAll(() => {
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

function qemuRaw(name: string): Buffer {
  const out = p(`${name}.qemu.raw`);
  if (!fs.existsSync(out)) img('convert', '-q', '-O', 'raw', name, out);
  return fs.readFileSync(out);
}

describe('qcow2 images made by qemu-img read as qemu-img reads them', () => {
  for (const [name, what] of Object.entries(IMAGES)) {
    it(`${name}: ${what}`, async (ctx) => {
      if (!QEMU) return ctx.skip(SKIP);
      const want = qemuRaw(name);
      // Unaligned small reads cross cluster and kind boundaries (the core read-modify-writes them); the
      // spawned CLI reads it the same way.
      await expectReadsAsQemu(
        p(name),
        want,
        [
          [999, 3003],
          [65535, 70000],
          [1048575, 2],
          [want.length - 700, 700],
        ],
        p(`${name}.blk.raw`),
      );
    });
  }

  // Chains without compressed clusters: qemu-img map prints every run with its offset, blk map must agree.
  for (const name of ['v2-64k.qcow2', 'v3-512.qcow2', 'v3-2m.qcow2', 'v2-zero.qcow2']) {
    it(`blk map --output=json ${name} is qemu-img map's`, (ctx) => {
      if (!QEMU) return ctx.skip(SKIP);
      const r = blk(['map', '--output=json', p(name)]);
      expect(r.stderr).toBe('');
      expect(JSON.parse(r.stdout)).toEqual(JSON.parse(img('map', '--output=json', name)));
    });
  }

  it('compressed clusters: blk map gives them no offset, as qemu-img map does', (ctx) => {
    if (!QEMU) return ctx.skip(SKIP);
    const r = blk(['map', '--output=json', p('comp-overlay.qcow2')]);
    expect(r.stderr).toBe('');
    expect(JSON.parse(r.stdout)).toEqual(JSON.parse(img('map', '--output=json', 'comp-overlay.qcow2')));
  });

  it("blk info shows qemu-img's qcow2 format-specific fields (compat 0.10 and 1.1) and the backing format", (ctx) => {
    if (!QEMU) return ctx.skip(SKIP);
    for (const name of ['v2-64k.qcow2', 'v3-512.qcow2']) {
      const q = JSON.parse(img('info', '--output=json', name));
      const r = blk(['info', '--output=json', p(name)]);
      expect(r.stderr).toBe('');
      const b = JSON.parse(r.stdout);
      expect(b['format-specific']).toEqual(q['format-specific']);
      expect(b['backing-filename']).toBe(q['backing-filename']);
      expect(b['backing-filename-format']).toBe(q['backing-filename-format']);
      expect(b['virtual-size']).toBe(q['virtual-size']);
    }
  });

  it("the stored backing name is untrusted data: relative to the image's directory, under the caller's backing policy", async (ctx) => {
    if (!QEMU) return ctx.skip(SKIP);
    const image = await openImage(p('v3-512.qcow2'), { readOnly: true });
    try {
      expect(image.backingReference).toMatchObject({ path: 'v2-64k.qcow2', format: 'qcow2' });
      expect(image.chain().map((i) => i.format)).toEqual(['qcow2', 'qcow2', 'raw']);
    } finally {
      await image.close();
    }
    const forbidden = await openImage(p('v3-512.qcow2'), { readOnly: true, backing: { mode: 'forbid' } }).catch(
      (e: unknown) => e,
    );
    expect(isBlockError(forbidden, 'backing-forbidden')).toBe(true);
    const confined = await openImage(p('v3-512.qcow2'), {
      readOnly: true,
      backing: { allowedDirs: ['/nonexistent'] },
    }).catch((e: unknown) => e);
    expect(isBlockError(confined, 'backing-forbidden')).toBe(true);
  });

  it('reads complete synchronously once the L2 table is cached (the contract read shape), and match the async ones', async (ctx) => {
    if (!QEMU) return ctx.skip(SKIP);
    const want = qemuRaw('v2-64k.qcow2');
    const storage = await new NodeVfs().open(p('v2-64k.qcow2'), { readOnly: true });
    const image = await qcow2Driver.open(storage, { readOnly: true, cache: 'writeback' });
    try {
      const below = (off: number, into: Uint8Array) => {
        into.set(want.subarray(off, off + into.length)); // the raw base, as the core would read it
        return undefined;
      };
      const first = new Uint8Array(256 * 1024);
      const r1 = image.read(0, first, below);
      expect(r1).toBeInstanceOf(Promise); // the L2 table is loaded first
      await r1;
      const again = new Uint8Array(256 * 1024);
      expect(image.read(0, again, below)).toBeUndefined();
      expect(Buffer.from(again).equals(want.subarray(0, again.length))).toBe(true);
      expect(Buffer.from(first).equals(again)).toBe(true);
    } finally {
      await image.close();
    }
  });
});
