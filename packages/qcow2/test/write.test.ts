/**
 * Writing qcow2 images that the real qemu-img made, judged by the real qemu-img: random workloads
 * (fast-check, seeded: writes of random sizes and offsets, unaligned ones included, write-zeroes
 * with and without unmap, discards, compressed writes, some issued concurrently) through the API
 * and through the spawned `blk io`, on compat=0.10 and 1.1 images with cluster sizes 512 B to
 * 2 MiB, refcount widths 1 to 64 bits, lazy refcounts and backing files; afterwards
 * `qemu-img check` exits 0 and `qemu-img compare` against a model raw file says identical.
 * Also: two writes into one unallocated cluster, refcount table growth, and the COPIED bit.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import fc from 'fast-check';
import { openImage, type Image } from '@blk/images';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { blk, ensureBuilt, hasCommand, tempDir } from '../../cli/test/helpers.js';

const QEMU = hasCommand('qemu-img') && hasCommand('qemu-io');
const SKIP = 'qemu-img/qemu-io are not installed (apt-get install qemu-utils): the qcow2 write tests are skipped';
if (!QEMU) console.warn(SKIP);

let dir: string;
const p = (name: string) => path.join(dir, name);

function run(cmd: string, args: string[], ok: number[] = [0]): { status: number; stdout: string; stderr: string } {
  const r = spawnSync(cmd, args, { cwd: dir, encoding: 'utf8', timeout: 60_000 });
  if (!ok.includes(r.status ?? -1))
    throw new Error(`${cmd} ${args.join(' ')} (exit ${r.status}): ${r.stderr}${r.stdout}`);
  return { status: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}
const img = (...args: string[]) => run('qemu-img', args).stdout;

/** qemu-img check's exit status and report. */
function check(name: string): { status: number; out: string } {
  const r = run('qemu-img', ['check', name], [0, 1, 2, 3, 63]);
  return { status: r.status, out: r.stdout + r.stderr };
}

/** `qemu-img compare` of the image against the model: exit 0 means identical. */
function compare(name: string, model: Uint8Array): { status: number; out: string } {
  const raw = p(`${name}.model.raw`);
  fs.writeFileSync(raw, model);
  const r = run('qemu-img', ['compare', '-f', 'qcow2', '-F', 'raw', name, raw], [0, 1, 2]);
  return { status: r.status, out: r.stdout + r.stderr };
}

/** Deterministic bytes: compressible (runs) or random-ish, from a seed. */
function bytes(length: number, seed: number, compressible: boolean): Uint8Array {
  const out = new Uint8Array(length);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < length; i++) {
    if (compressible && i % 97 !== 0) {
      out[i] = out[i - 1] ?? seed & 0xff;
      continue;
    }
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 0xff;
  }
  return out;
}

interface Variant {
  name: string;
  /** qemu-img create -o options. */
  options: string;
  size: number;
  cluster: number;
  /** A raw backing file of this image (filled with a pattern). */
  backing?: boolean;
  v2?: boolean;
  /** Data written by qemu-io, then an internal snapshot taken: every table and cluster is shared. */
  snapshot?: boolean;
}

const VARIANTS: Variant[] = [
  { name: 'v3-64k', options: 'compat=1.1', size: 6 << 20, cluster: 65536 },
  { name: 'v2-64k-backing', options: 'compat=0.10', size: 6 << 20, cluster: 65536, backing: true, v2: true },
  // 512 B clusters with 64-bit refcounts: 64 clusters per refcount block, the table grows.
  { name: 'v3-512-rc64', options: 'cluster_size=512,refcount_bits=64', size: 3 << 20, cluster: 512 },
  {
    name: 'v3-4k-rc1-lazy-backing',
    options: 'cluster_size=4096,refcount_bits=1,lazy_refcounts=on',
    size: 4 << 20,
    cluster: 4096,
    backing: true,
  },
  { name: 'v3-2m-rc8', options: 'cluster_size=2M,refcount_bits=8', size: (6 << 20) + 512, cluster: 2 << 20 },
  { name: 'v2-4k', options: 'compat=0.10,cluster_size=4096', size: 4 << 20, cluster: 4096, v2: true },
  {
    name: 'v3-1k-rc2-backing',
    options: 'cluster_size=1024,refcount_bits=2',
    size: 2 << 20,
    cluster: 1024,
    backing: true,
  },
  { name: 'v3-4k-snapshot', options: 'cluster_size=4096', size: 2 << 20, cluster: 4096, snapshot: true },
];

/** The backing file's content (a pattern), as the model starts from it. */
function backingBytes(size: number): Uint8Array {
  return bytes(size, 0xb0b, false);
}

function make(v: Variant, name: string): Uint8Array {
  const file = p(name);
  fs.rmSync(file, { force: true });
  if (v.backing) {
    const base = p(`${name}.base.raw`);
    fs.writeFileSync(base, backingBytes(v.size));
    img('create', '-q', '-f', 'qcow2', '-o', v.options, '-b', base, '-F', 'raw', file, String(v.size));
    return backingBytes(v.size);
  }
  img('create', '-q', '-f', 'qcow2', '-o', v.options, file, String(v.size));
  const content = new Uint8Array(v.size);
  if (v.snapshot) {
    const half = v.size / 2;
    run('qemu-io', ['-c', `write -P 60 0 ${half}`, '-c', `write -c -P 61 ${half} ${half / 2}`, file]);
    img('snapshot', '-c', 's1', file);
    content.fill(60, 0, half).fill(61, half, half + half / 2);
  }
  return content;
}

type Op =
  | { op: 'write'; offset: number; length: number; seed: number; compressible: boolean }
  | { op: 'zero'; offset: number; length: number; unmap: boolean }
  | { op: 'discard'; offset: number; length: number }
  | { op: 'compress'; cluster: number; count: number; seed: number };

function opArb(v: Variant): fc.Arbitrary<Op> {
  const cs = v.cluster;
  const maxLen = Math.min(v.size, Math.max(3 * cs, 200_000));
  const range = fc
    .tuple(fc.integer({ min: 0, max: v.size - 1 }), fc.integer({ min: 1, max: maxLen }))
    .map(([offset, length]) => ({ offset, length: Math.min(length, v.size - offset) }));
  const aligned = fc
    .tuple(fc.integer({ min: 0, max: Math.floor(v.size / cs) - 1 }), fc.integer({ min: 1, max: 4 }))
    .map(([c, n]) => ({ offset: c * cs, length: Math.min(n * cs, v.size - c * cs) }));
  return fc.oneof(
    {
      weight: 5,
      arbitrary: fc
        .tuple(fc.oneof(range, aligned), fc.integer(), fc.boolean())
        .map(([r, seed, compressible]) => ({ op: 'write' as const, ...r, seed, compressible })),
    },
    {
      weight: 2,
      arbitrary: fc
        .tuple(fc.oneof(range, aligned), fc.boolean())
        .map(([r, unmap]) => ({ op: 'zero' as const, ...r, unmap })),
    },
    { weight: 1, arbitrary: fc.oneof(range, aligned).map((r) => ({ op: 'discard' as const, ...r })) },
    {
      weight: 2,
      arbitrary: fc
        .tuple(fc.integer({ min: 0, max: Math.ceil(v.size / cs) - 1 }), fc.integer({ min: 1, max: 3 }), fc.integer())
        .map(([cluster, count, seed]) => ({ op: 'compress' as const, cluster, count, seed })),
    },
  );
}

/** Applies `op` to the model: what the image must read afterwards. */
function applyModel(v: Variant, model: Uint8Array, op: Op): void {
  const cs = v.cluster;
  switch (op.op) {
    case 'write':
      model.set(bytes(op.length, op.seed, op.compressible), op.offset);
      return;
    case 'zero':
      model.fill(0, op.offset, op.offset + op.length);
      return;
    case 'compress': {
      const offset = op.cluster * cs;
      const length = Math.min(op.count * cs, v.size - offset);
      model.set(bytes(length, op.seed, true), offset);
      return;
    }
    case 'discard': {
      // The core clips inwards to clusters (the image's end counts as aligned); v3 discards read as
      // zeros, v2 ones show the backing file (or zeros without one).
      const start = Math.ceil(op.offset / cs) * cs;
      const end = op.offset + op.length === v.size ? v.size : Math.floor((op.offset + op.length) / cs) * cs;
      if (end <= start) return;
      if (v.v2 && v.backing) model.set(backingBytes(v.size).subarray(start, end), start);
      else model.fill(0, start, end);
      return;
    }
  }
}

async function applyImage(v: Variant, image: Image, op: Op): Promise<void> {
  const cs = v.cluster;
  switch (op.op) {
    case 'write':
      return image.write(op.offset, bytes(op.length, op.seed, op.compressible));
    case 'zero':
      return image.writeZeroes(op.offset, op.length, { mayUnmap: op.unmap });
    case 'discard':
      return image.discard(op.offset, op.length);
    case 'compress': {
      const offset = op.cluster * cs;
      const length = Math.min(op.count * cs, v.size - offset);
      return image.write(offset, bytes(length, op.seed, true), { compress: true });
    }
  }
}

beforeAll(() => {
  if (!QEMU) return;
  ensureBuilt();
  dir = tempDir('qcow2-write');
}, 120_000);

afterAll(() => {
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

describe.skipIf(!QEMU)('random workloads through the API, judged by qemu-img check and compare', () => {
  for (const [vi, v] of VARIANTS.entries()) {
    it(`${v.name}: ${v.options}${v.backing ? ', raw backing file' : ''}`, async () => {
      let runNo = 0;
      await fc.assert(
        fc.asyncProperty(
          fc.array(fc.array(opArb(v), { minLength: 1, maxLength: 4 }), { minLength: 1, maxLength: 8 }),
          fc.boolean(),
          async (batches, reopen) => {
            const name = `${v.name}-${runNo++}.qcow2`;
            const model = make(v, name);
            let image = await openImage(p(name), {});
            try {
              for (const [bi, batch] of batches.entries()) {
                // Each batch is issued at once: overlapping requests run in issue order, the rest in parallel.
                await Promise.all(batch.map((op) => applyImage(v, image, op)));
                for (const op of batch) applyModel(v, model, op);
                if (reopen && bi === 1) {
                  await image.close();
                  image = await openImage(p(name), {});
                }
              }
              const back = new Uint8Array(v.size);
              await image.readInto(0, back);
              expect(Buffer.from(back).equals(Buffer.from(model))).toBe(true);
            } finally {
              await image.close();
            }
            const c = check(name);
            expect(c.out).toContain('No errors were found');
            expect(c.status).toBe(0);
            expect(compare(name, model)).toEqual({ status: 0, out: expect.stringContaining('Images are identical') });
          },
        ),
        { seed: 0x9c0e + vi, numRuns: v.cluster >= 1 << 20 ? 2 : 3 },
      );
    }, 60_000);
  }
});

describe.skipIf(!QEMU)('allocation', () => {
  it('two writes into one unallocated cluster both land (the core serialises per cluster)', async () => {
    const v = VARIANTS[0]!;
    const model = make(v, 'race.qcow2');
    const image = await openImage(p('race.qcow2'), {});
    const writes: Promise<void>[] = [];
    for (let c = 0; c < 16; c++) {
      for (let s = 0; s < 4; s++) {
        const data = bytes(512, c * 4 + s + 1, false);
        writes.push(image.write(c * 65536 + s * 4096 + 100, data));
        model.set(data, c * 65536 + s * 4096 + 100);
      }
    }
    await Promise.all(writes);
    await image.close();
    expect(check('race.qcow2').status).toBe(0);
    expect(compare('race.qcow2', model).status).toBe(0);
    // 16 data clusters, no more: no write allocated a cluster a neighbour's write then orphaned.
    expect(check('race.qcow2').out).toMatch(/\b16\/96 = /);
  });

  it('grows the refcount table (512 B clusters, 64-bit refcounts) and qemu-img agrees', async () => {
    const v = VARIANTS[2]!;
    const model = make(v, 'grow.qcow2');
    const before = JSON.parse(img('info', '--output=json', 'grow.qcow2'));
    const image = await openImage(p('grow.qcow2'), {});
    const data = bytes(v.size, 7, false);
    await image.write(0, data);
    model.set(data);
    await image.close();
    expect(check('grow.qcow2').status).toBe(0);
    expect(compare('grow.qcow2', model).status).toBe(0);
    const head = fs.readFileSync(p('grow.qcow2')).subarray(0, 64);
    const tableClusters = head.readUInt32BE(56);
    expect(tableClusters).toBeGreaterThan(1);
    expect(before['cluster-size']).toBe(512);
  });

  it('sets COPIED on what it allocates, keeps the dirty bit off after a clean close with lazy refcounts', async () => {
    const v = VARIANTS[3]!;
    make(v, 'copied.qcow2');
    const image = await openImage(p('copied.qcow2'), {});
    await image.write(8192, bytes(4096, 3, false));
    await image.flush();
    // Lazy refcounts: the dirty bit is on while the image is open for writing (byte 79, bit 0).
    expect(fs.readFileSync(p('copied.qcow2'))[79]! & 1).toBe(1);
    await image.close();
    expect(fs.readFileSync(p('copied.qcow2'))[79]! & 1).toBe(0);
    const map = JSON.parse(img('map', '--output=json', 'copied.qcow2')) as Array<{
      start: number;
      offset?: number;
      data: boolean;
      depth: number;
    }>;
    const run = map.find((r) => r.start === 8192)!;
    expect(run.depth).toBe(0);
    // qemu-io reads the L2 entry's COPIED bit back through `qemu-img check` (no "copied" complaint) and
    // the raw entry: find the L2 table via the L1 entry.
    const file = fs.readFileSync(p('copied.qcow2'));
    const l1Offset = Number(file.readBigUInt64BE(40));
    const l1 = file.readBigUInt64BE(l1Offset);
    expect(l1 >> 63n).toBe(1n);
    const l2 = Number(l1 & 0x00fffffffffffe00n);
    const entry = file.readBigUInt64BE(l2 + 2 * 8);
    expect(entry >> 63n).toBe(1n);
    expect(Number(entry & 0x00fffffffffffe00n)).toBe(run.offset);
    expect(check('copied.qcow2').status).toBe(0);
  });

  it('writes compressed clusters QEMU reads (4 KiB window), packed with per-descriptor refcounts', async () => {
    const v = VARIANTS[0]!;
    const model = make(v, 'comp.qcow2');
    const image = await openImage(p('comp.qcow2'), {});
    expect(image.capabilities.compress).toBe(true);
    // A repeat 6 KiB back (which a 32 KiB-window encoder would use, and QEMU's 4 KiB-window inflate
    // could not follow) next to zeros that do compress: the cluster shrinks, and QEMU must read it.
    const far = new Uint8Array(65536);
    const unit = bytes(6144, 5, false);
    far.set(unit, 0);
    far.set(unit, 6144);
    for (let c = 0; c < 8; c++) {
      await image.write(c * 65536, far, { compress: true });
      model.set(far, c * 65536);
    }
    // Random data does not shrink: stored as an ordinary cluster (with a host offset in the map).
    await image.write(8 * 65536, bytes(65536, 9, false), { compress: true });
    model.set(bytes(65536, 9, false), 8 * 65536);
    await expect(image.write(512, new Uint8Array(65536), { compress: true })).rejects.toMatchObject({
      kind: 'invalid-argument',
    });
    await image.close();
    const c = check('comp.qcow2');
    expect(c.status).toBe(0);
    expect(c.out).toMatch(/compressed clusters/);
    expect(compare('comp.qcow2', model).status).toBe(0);
    const map = JSON.parse(img('map', '--output=json', 'comp.qcow2')) as Array<{
      start: number;
      data: boolean;
      offset?: number;
    }>;
    expect(map.filter((r) => r.start < 8 * 65536 && r.data).every((r) => r.offset === undefined)).toBe(true);
    expect(map.find((r) => r.start === 8 * 65536)?.offset).toBeGreaterThan(0);
    // Eight payloads of about 12 KiB share two clusters (each refcount counts its descriptors, and check
    // found no error): header, refcount table and block, L1, L2, two shared clusters, one plain.
    expect(fs.statSync(p('comp.qcow2')).size).toBeLessThanOrEqual(8 * 65536);
  });
});

describe.skipIf(!QEMU)('through the spawned blk io', () => {
  it('write, write -c, write -z [-u], discard on qcow2 images: qemu-img check 0, compare identical', () => {
    for (const v of [VARIANTS[0]!, VARIANTS[1]!, VARIANTS[3]!]) {
      const name = `io-${v.name}.qcow2`;
      const model = make(v, name);
      const rng = fc.sample(fc.array(opArb(v), { minLength: 20, maxLength: 20 }), { seed: 42, numRuns: 1 })[0]!;
      const cmds: string[] = [];
      for (const op of rng) {
        const cs = v.cluster;
        // blk io takes byte patterns: the model uses the same.
        switch (op.op) {
          case 'write': {
            const off = Math.floor(op.offset / 512) * 512;
            const len = Math.max(512, Math.floor(op.length / 512) * 512);
            if (off + len > v.size) continue;
            const pat = (op.seed >>> 0) % 255;
            cmds.push(`write -P ${pat} ${off} ${len}`);
            model.fill(pat, off, off + len);
            break;
          }
          case 'compress': {
            const off = op.cluster * cs;
            const len = Math.min(op.count * cs, v.size - off);
            const pat = (op.seed >>> 0) % 255;
            cmds.push(`write -c -P ${pat} ${off} ${len}`);
            model.fill(pat, off, off + len);
            break;
          }
          case 'zero': {
            const off = Math.floor(op.offset / 512) * 512;
            const len = Math.max(512, Math.floor(op.length / 512) * 512);
            if (off + len > v.size) continue;
            cmds.push(`write -z${op.unmap ? ' -u' : ''} ${off} ${len}`);
            model.fill(0, off, off + len);
            break;
          }
          case 'discard': {
            const off = Math.floor(op.offset / 512) * 512;
            const len = Math.max(512, Math.floor(op.length / 512) * 512);
            if (off + len > v.size) continue;
            cmds.push(`discard ${off} ${len}`);
            applyModel(v, model, { op: 'discard', offset: off, length: len });
            break;
          }
        }
      }
      const r = blk(['io', ...cmds.flatMap((c) => ['-c', c]), p(name)]);
      expect(r.stderr).toBe('');
      expect(r.code).toBe(0);
      expect(r.stdout).not.toMatch(/failed/);
      expect(check(name).status).toBe(0);
      expect(compare(name, model).status).toBe(0);
    }
  }, 60_000);

  it('write -c on raw is not supported, as qemu-io says', () => {
    fs.writeFileSync(p('plain.raw'), new Uint8Array(65536));
    const r = blk(['io', '-f', 'raw', '-c', 'write -c 0 64k', p('plain.raw')]);
    expect(r.stdout).toContain('write failed: Operation not supported');
  });
});

describe.skipIf(!QEMU)('internal snapshots', () => {
  it('writes over shared L2 tables and clusters (copies them) and leaves the snapshot intact', async () => {
    const v = VARIANTS.find((x) => x.snapshot)!;
    const model = make(v, 'snap.qcow2');
    const before = model.slice();
    const image = await openImage(p('snap.qcow2'), {});
    const ops: Op[] = [
      { op: 'write', offset: 1000, length: 5000, seed: 1, compressible: false },
      { op: 'write', offset: 4096 * 300, length: 4096 * 3, seed: 2, compressible: false },
      { op: 'zero', offset: 4096 * 10, length: 4096 * 2, unmap: false },
      { op: 'zero', offset: 4096 * 20, length: 4096 * 2, unmap: true },
      { op: 'discard', offset: 4096 * 30, length: 4096 * 4 },
      { op: 'compress', cluster: 40, count: 2, seed: 3 },
      { op: 'write', offset: (1 << 20) + 100, length: 3000, seed: 4, compressible: false },
    ];
    for (const op of ops) {
      await applyImage(v, image, op);
      applyModel(v, model, op);
    }
    await image.close();
    const c = check('snap.qcow2');
    expect(c.out).toContain('No errors were found');
    expect(c.status).toBe(0);
    expect(compare('snap.qcow2', model).status).toBe(0);
    // The snapshot still reads as it was taken.
    fs.copyFileSync(p('snap.qcow2'), p('snap-applied.qcow2'));
    img('snapshot', '-a', 's1', 'snap-applied.qcow2');
    expect(compare('snap-applied.qcow2', before).status).toBe(0);
    expect(check('snap-applied.qcow2').status).toBe(0);
  });
});

describe.skipIf(!QEMU)('resize and the backing reference', () => {
  it('grows (a larger L1 table through the allocator), shrinks, grows again: qemu-img agrees', async () => {
    const v: Variant = { name: 'rs', options: 'cluster_size=4096', size: 1 << 20, cluster: 4096 };
    make(v, 'resize.qcow2');
    const l1Before = fs.readFileSync(p('resize.qcow2')).readUInt32BE(36);
    let image = await openImage(p('resize.qcow2'), {});
    const a = bytes(300_000, 11, false);
    await image.write(700_000, a);
    await image.resize(64 << 20);
    const b = bytes(100_000, 12, false);
    await image.write(60 << 20, b);
    await image.close();
    const model = new Uint8Array(64 << 20);
    model.set(a, 700_000);
    model.set(b, 60 << 20);
    expect(check('resize.qcow2').status).toBe(0);
    expect(compare('resize.qcow2', model).status).toBe(0);
    const head = fs.readFileSync(p('resize.qcow2'));
    expect(head.readUInt32BE(36)).toBe(32); // l1_size: 64 MiB / (512 entries * 4 KiB)
    expect(l1Before).toBe(1);
    // Shrink to 800 000 bytes (a partial cluster): the data past it goes, the tail reads as zeros after a grow.
    image = await openImage(p('resize.qcow2'), {});
    await expect(image.resize(800_001, { shrink: true })).rejects.toMatchObject({ kind: 'invalid-argument' });
    await image.resize(800_256, { shrink: true });
    await image.close();
    expect(check('resize.qcow2').status).toBe(0);
    expect(compare('resize.qcow2', model.subarray(0, 800_256)).status).toBe(0);
    const info = JSON.parse(img('info', '--output=json', 'resize.qcow2'));
    expect(info['virtual-size']).toBe(800_256);
    image = await openImage(p('resize.qcow2'), {});
    await image.resize(2 << 20);
    await image.close();
    const regrown = new Uint8Array(2 << 20);
    regrown.set(model.subarray(0, 800_256));
    expect(check('resize.qcow2').status).toBe(0);
    expect(compare('resize.qcow2', regrown).status).toBe(0);
    // Leaks after the shrink would show in check's report: none.
    expect(check('resize.qcow2').out).not.toMatch(/leaked/);
  });

  it('rewrites the backing file name and format (rebase -u) and removes it, as qemu-img reads them', async () => {
    const v: Variant = { name: 'bk', options: 'compat=1.1', size: 1 << 20, cluster: 65536, backing: true };
    make(v, 'rebase.qcow2');
    fs.writeFileSync(p('other.raw'), bytes(1 << 20, 77, false));
    let image = await openImage(p('rebase.qcow2'), {});
    await image.write(0, bytes(4096, 1, false));
    await image.setBackingReference({ path: 'other.raw', format: 'raw' });
    await image.close();
    let info = JSON.parse(img('info', '--output=json', 'rebase.qcow2'));
    expect(info['backing-filename']).toBe('other.raw');
    expect(info['backing-filename-format']).toBe('raw');
    expect(check('rebase.qcow2').status).toBe(0);
    const model = bytes(1 << 20, 77, false);
    model.set(bytes(4096, 1, false), 0);
    // The rest of cluster 0 was copied from the old backing file by the write (rebase -u copies nothing).
    model.set(backingBytes(1 << 20).subarray(4096, 65536), 4096);
    expect(compare('rebase.qcow2', model).status).toBe(0);
    image = await openImage(p('rebase.qcow2'), {});
    await image.setBackingReference(undefined);
    await image.close();
    info = JSON.parse(img('info', '--output=json', 'rebase.qcow2'));
    expect(info['backing-filename']).toBeUndefined();
    expect(check('rebase.qcow2').status).toBe(0);
  });
});

describe.skipIf(!QEMU)('hostile images and cache modes while writing', () => {
  it('a metadata cluster whose refcount is 0 stops the allocation with a typed error and changes nothing', async () => {
    const v = VARIANTS[0]!;
    make(v, 'zeroref.qcow2');
    run('qemu-io', ['-c', 'write -P 0x5a 0 64k', 'zeroref.qcow2']);
    const file = fs.readFileSync(p('zeroref.qcow2'));
    // Clusters: 0 header, 1 refcount table, 2 refcount block, 3 L1, 4 L2, 5 data. Zero the L2 table's refcount.
    const block = Number(file.readBigUInt64BE(Number(file.readBigUInt64BE(48))));
    file.writeUInt16BE(0, block + 4 * 2);
    fs.writeFileSync(p('zeroref.qcow2'), file);
    const image = await openImage(p('zeroref.qcow2'), {});
    await expect(image.write(65536, new Uint8Array(4096).fill(1))).rejects.toMatchObject({
      kind: 'invalid-header',
      message: expect.stringContaining('holds metadata but its refcount is 0'),
    });
    await image.close();
    expect(fs.readFileSync(p('zeroref.qcow2')).equals(file)).toBe(true);
  });

  it('a refcount table entry with reserved bits refuses the writable open, typed, and leaves the file alone', async () => {
    const v = VARIANTS[0]!;
    make(v, 'badtable.qcow2');
    const file = fs.readFileSync(p('badtable.qcow2'));
    const table = Number(file.readBigUInt64BE(48));
    file.writeUInt32BE(file.readUInt32BE(table + 4) | 0x100, table + 4);
    fs.writeFileSync(p('badtable.qcow2'), file);
    await expect(openImage(p('badtable.qcow2'), {})).rejects.toMatchObject({ kind: 'invalid-header' });
    const ro = await openImage(p('badtable.qcow2'), { readOnly: true });
    await ro.close();
    expect(fs.readFileSync(p('badtable.qcow2')).equals(file)).toBe(true);
  });

  it('writethrough: every request is durable when it resolves, consistent after a repair (lazy refcounts; no close, no flush)', async () => {
    const v = VARIANTS[3]!;
    const model = make(v, 'wt.qcow2');
    const image = await openImage(p('wt.qcow2'), { cache: 'writethrough' });
    const ops: Op[] = [
      { op: 'write', offset: 1000, length: 9000, seed: 1, compressible: false },
      { op: 'compress', cluster: 5, count: 2, seed: 2 },
      { op: 'zero', offset: 4096 * 8, length: 4096 * 3, unmap: true },
      { op: 'discard', offset: 0, length: 8192 },
      { op: 'write', offset: 3 << 20, length: 70_000, seed: 3, compressible: true },
    ];
    try {
      for (const [i, op] of ops.entries()) {
        await applyImage(v, image, op);
        applyModel(v, model, op);
        // A copy of the file as it is now: what a crash right after the request would leave.
        fs.copyFileSync(p('wt.qcow2'), p(`wt-${i}.qcow2`));
        // Lazy refcounts (this variant): the copy is dirty and its refcounts may lag (as QEMU's); the
        // repair any writable open makes must leave it clean and holding every request's data.
        expect(fs.readFileSync(p(`wt-${i}.qcow2`))[79]! & 1).toBe(1);
        const r = run('qemu-img', ['check', '-r', 'all', `wt-${i}.qcow2`], [0, 1, 2, 3, 63]);
        expect(r.status, r.stdout + r.stderr).toBe(0);
        const c = check(`wt-${i}.qcow2`);
        expect([0, 3], c.out).toContain(c.status);
        expect(compare(`wt-${i}.qcow2`, model).status).toBe(0);
      }
    } finally {
      await image.close();
    }
    expect(check('wt.qcow2').status).toBe(0);
  });

  it('more refcount blocks than the cache holds (512 B clusters, 64-bit refcounts, 24 MiB): evictions keep the order', async () => {
    const v: Variant = { name: 'big', options: 'cluster_size=512,refcount_bits=64', size: 24 << 20, cluster: 512 };
    const model = make(v, 'big.qcow2');
    const image = await openImage(p('big.qcow2'), {});
    const piece = 1 << 20;
    for (let at = 0; at < v.size; at += 4 * piece) {
      await Promise.all(
        [0, 1, 2, 3].map((k) => {
          const data = bytes(piece, at + k, false);
          model.set(data, at + k * piece);
          return image.write(at + k * piece, data);
        }),
      );
    }
    await image.close();
    expect(check('big.qcow2').status).toBe(0);
    expect(compare('big.qcow2', model).status).toBe(0);
  }, 60_000);
});

describe.skipIf(!QEMU)('past the L2 cache', () => {
  it('random writes over more L2 tables than the cache holds (4 KiB clusters, 1 GiB), 16 in flight', async () => {
    const size = 1 << 30;
    img('create', '-q', '-f', 'qcow2', '-o', 'cluster_size=4096', 'wide.qcow2', String(size));
    const raw = p('wide.model.raw');
    fs.writeFileSync(raw, new Uint8Array(0));
    fs.truncateSync(raw, size);
    const fd = fs.openSync(raw, 'r+');
    const image = await openImage(p('wide.qcow2'), {});
    let x = 99;
    const next = () => {
      x ^= x << 13;
      x ^= x >>> 17;
      x ^= x << 5;
      return x >>> 0;
    };
    let batch: Promise<void>[] = [];
    for (let i = 0; i < 1200; i++) {
      // 1 GiB / 2 MiB per table = 512 tables; the 1 MiB cache holds 256 of them.
      const offset = (next() % (size / 512)) * 512;
      const data = bytes(Math.min(3000, size - offset), i + 1, false);
      fs.writeSync(fd, data, 0, data.length, offset);
      batch.push(image.write(offset, data));
      if (batch.length === 16) {
        await Promise.all(batch);
        batch = [];
      }
    }
    await Promise.all(batch);
    fs.closeSync(fd);
    await image.close();
    expect(check('wide.qcow2').status).toBe(0);
    const r = run('qemu-img', ['compare', '-f', 'qcow2', '-F', 'raw', 'wide.qcow2', raw], [0, 1]);
    expect(r.stdout).toContain('Images are identical');
  }, 60_000);
});
