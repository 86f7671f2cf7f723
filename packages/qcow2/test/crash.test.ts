/**
 * Crash safety and fault injection of the qcow2 writer, judged by the real qemu-img.
 *
 * Crash: a workload (allocating and partial writes, in-place overwrites, write-zeroes with and
 * without unmap, discards, compressed writes, a second L2 table, refcount-table growth, flushes)
 * runs on images qemu-img made, over @blk/faults' CrashSimVfs; its log is replayed and crashed
 * after write points sampled over the whole workload, in two post-crash states each (kill, and a
 * power loss keeping a subset of the unflushed sectors). Every state must pass `qemu-img check` with exit 0 or 3 (leaks only, never
 * corruption; with lazy refcounts a dirty state is first repaired with `qemu-img check -r all`, as any writable open does), and every guest sector must read (through `qemu-img convert`) as one of the
 * contents it held during the workload: old or new, never anything else.
 *
 * Faults: EIO on the n-th write or flush of the image file makes the request (or the close) fail
 * with a typed `io` error, and what is left on disk still passes `qemu-img check` (0 or 3).
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { DriverRegistry, MemoryVfs, isBlockError, openImage, type Image, type Vfs } from '@blk/core';
import { rawDriver } from '@blk/raw';
import { CrashSimVfs, FaultyVfs, Rng } from '@blk/faults';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hasCommand, tempDir } from '../../cli/test/helpers.js';
import { qcow2Driver } from '../src/index.js';
import { crashAtPoints, writePoints } from './crash-points.js';

const QEMU = hasCommand('qemu-img');
if (!QEMU) console.warn('qemu-img is not installed (apt-get install qemu-utils): the qcow2 crash tests are skipped');

const registry = new DriverRegistry([qcow2Driver, rawDriver]);
let dir: string;
const p = (name: string) => path.join(dir, name);

function qemuImg(args: string[], ok: number[] = [0]): { status: number; out: string } {
  const r = spawnSync('qemu-img', args, { cwd: dir, encoding: 'utf8', timeout: 60_000 });
  if (!ok.includes(r.status ?? -1))
    throw new Error(`qemu-img ${args.join(' ')} (exit ${r.status}): ${r.stderr}${r.stdout}`);
  return { status: r.status ?? -1, out: r.stdout + r.stderr };
}

const SIZE = 4 << 20;
const SECTOR = 512;

function fill(length: number, seed: number, compressible = false): Uint8Array {
  const out = new Uint8Array(length);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < length; i++) {
    if (compressible && i % 61 !== 0) {
      out[i] = out[i - 1]!;
      continue;
    }
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 0xff;
  }
  return out;
}

type Step = (image: Image) => Promise<void>;

/** The workload, with what each step makes the guest read (applied to `model`). */
function workload(cs: number): Array<{ run: Step; apply: (m: Uint8Array) => void }> {
  const w = (offset: number, length: number, seed: number, compress = false) => ({
    run: (im: Image) => im.write(offset, fill(length, seed, compress), compress ? { compress: true } : undefined),
    apply: (m: Uint8Array) => m.set(fill(length, seed, compress), offset),
  });
  const z = (offset: number, length: number, mayUnmap: boolean) => ({
    run: (im: Image) => im.writeZeroes(offset, length, { mayUnmap }),
    apply: (m: Uint8Array) => m.fill(0, offset, offset + length),
  });
  const flush = { run: (im: Image) => im.flush(), apply: () => {} };
  return [
    w(1000, 3000, 1), // partial cluster: copy-on-write from below
    w(cs * 3, cs * 2, 2), // whole clusters
    flush,
    w(cs * 3 + 512, 1024, 3), // in place (COPIED)
    w(3 << 20, 5000, 4), // a second L2 table (4 KiB clusters: one table maps 2 MiB)
    w(cs * 8, cs * 2, 5, true), // compressed
    flush,
    z(cs * 3, cs, true),
    z(cs * 4, cs, false),
    w(cs * 8 + 100, 200, 6), // partial write into a compressed cluster
    { run: (im: Image) => im.discard(cs * 9, cs), apply: () => {} },
    w(cs * 20, 7000, 7),
    // 2.5 MiB more: with 512 B clusters and 64-bit refcounts the refcount table has to grow.
    w(1 << 20, (5 << 20) / 2, 8),
  ];
}

interface Variant {
  name: string;
  options: string;
  cluster: number;
  backing: boolean;
  /** What a discard leaves: v3 zeros, v2 over a backing file the backing file's bytes. */
  v2: boolean;
}

const VARIANTS: Variant[] = [
  // 64 clusters per refcount block, 4096 per table cluster: the big write grows the table.
  { name: 'v3-512-rc64', options: 'cluster_size=512,refcount_bits=64', cluster: 512, backing: false, v2: false },
  {
    name: 'v3-4k-lazy-rc1-backing',
    options: 'cluster_size=4096,lazy_refcounts=on,refcount_bits=1',
    cluster: 4096,
    backing: true,
    v2: false,
  },
  { name: 'v2-4k-backing', options: 'compat=0.10,cluster_size=4096', cluster: 4096, backing: true, v2: true },
];

function hash(bytes: Uint8Array): string {
  let h = 0x811c9dc5;
  for (let i = 0; i < bytes.length; i++) h = Math.imul(h ^ bytes[i]!, 16777619);
  return (h >>> 0).toString(16);
}

beforeAll(() => {
  if (QEMU) dir = tempDir('qcow2-crash');
});
afterAll(() => {
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

/** The image (and its backing file) qemu-img made for `v`, as bytes. */
function makeFiles(v: Variant): { image: Uint8Array; base?: Uint8Array } {
  const name = `${v.name}.qcow2`;
  fs.rmSync(p(name), { force: true });
  let base: Uint8Array | undefined;
  if (v.backing) {
    base = fill(SIZE, 99);
    fs.writeFileSync(p('base.raw'), base);
    qemuImg(['create', '-q', '-f', 'qcow2', '-o', v.options, '-b', 'base.raw', '-F', 'raw', name, String(SIZE)]);
  } else {
    qemuImg(['create', '-q', '-f', 'qcow2', '-o', v.options, name, String(SIZE)]);
  }
  return { image: new Uint8Array(fs.readFileSync(p(name))), ...(base ? { base } : {}) };
}

describe.skipIf(!QEMU)('crash at a sample of points: qemu-img check 0 or 3, every sector old or new', () => {
  for (const [vi, v] of VARIANTS.entries()) {
    it(v.name, async () => {
      const files = makeFiles(v);
      const vfs = new CrashSimVfs({ cwd: '/d' });
      vfs.put('/d/img.qcow2', files.image);
      if (files.base) vfs.put('/d/base.raw', files.base);
      vfs.syncAll();
      const steps = workload(v.cluster);
      // Every content each sector had: before, and after each step (discards as the variant reads them).
      let model = files.base ? files.base.slice() : new Uint8Array(SIZE);
      const versions: Uint8Array[] = [model.slice()];
      const image = await openImage('/d/img.qcow2', { registry, vfs });
      const start = vfs.log.length;
      for (const step of steps) {
        await step.run(image);
        step.apply(model);
        versions.push(model.slice());
      }
      const closing = vfs.log.length;
      await image.close();
      // The discard step: model it from the image's own semantics (v3 zeros, v2 the backing file).
      const cs = v.cluster;
      const discarded = v.v2 && files.base ? files.base.subarray(cs * 9, cs * 10) : new Uint8Array(cs);
      for (const ver of versions.slice(11)) ver.set(discarded, cs * 9);
      model = versions[versions.length - 1]!;
      const allowed: Array<Set<string>> = [];
      for (let s = 0; s < SIZE / SECTOR; s++) {
        const set = new Set<string>();
        for (const ver of versions) set.add(hash(ver.subarray(s * SECTOR, (s + 1) * SECTOR)));
        allowed.push(set);
      }
      const statuses = new Set<number>();
      let n = 0;
      const check = async (crashed: MemoryVfs): Promise<string | undefined> => {
        const file = p(`crash-${v.name}-${n++}.qcow2`);
        const bytes = crashed.file('/d/img.qcow2').snapshot();
        fs.writeFileSync(file, bytes);
        // Lazy refcounts leave a dirty image whose refcounts may be stale (as QEMU's): what opens it
        // writable repairs it first, so the repaired image is what must be clean, sector for sector.
        if (!v.v2 && (bytes[79]! & 1) !== 0) {
          if (!v.options.includes('lazy_refcounts=on'))
            return 'the dirty bit is set on an image without lazy refcounts';
          const r = qemuImg(['check', '-r', 'all', file], [0, 1, 2, 3, 63]);
          if (r.status !== 0) return `qemu-img check -r all of the dirty image exit ${r.status}: ${r.out}`;
        }
        const c = qemuImg(['check', file], [0, 1, 2, 3, 63]);
        statuses.add(c.status);
        if (c.status !== 0 && c.status !== 3) return `qemu-img check exit ${c.status}: ${c.out}`;
        const raw = `${file}.raw`;
        qemuImg(['convert', '-U', '-O', 'raw', file, raw]);
        const got = new Uint8Array(fs.readFileSync(raw));
        fs.rmSync(raw);
        fs.rmSync(file);
        for (let s = 0; s < SIZE / SECTOR; s++) {
          if (!allowed[s]!.has(hash(got.subarray(s * SECTOR, (s + 1) * SECTOR)))) {
            return `sector ${s} holds neither an old nor a new content`;
          }
        }
        return undefined;
      };
      // A sample of write points spread over the whole workload (not only its first ones), two
      // post-crash states at each.
      const points = writePoints(vfs.log, start);
      // Plus write points of the final flush and close, where the deferred frees are applied.
      const spread = (from: number[], n: number) =>
        from.length <= n
          ? from
          : Array.from({ length: n }, (_, k) => from[Math.floor((k * (from.length - 1)) / (n - 1))]!);
      const sample = [
        ...spread(points, 6),
        ...spread(
          points.filter((i) => i >= closing),
          8,
        ),
      ].sort((a, b) => a - b);
      // One replay of the log; at each sampled point, the kill state and one power-loss state.
      const result = await crashAtPoints(vfs.log, [...new Set(sample)], new Rng(0x51 + vi), 2, check);
      expect(result.violations).toEqual([]);
      expect(result.states).toBeGreaterThan(12);
      expect(points.length).toBeGreaterThan(24);
      // After the clean close the image itself is clean (and the dirty bit is off again).
      const final = p(`${v.name}-final.qcow2`);
      fs.writeFileSync(final, vfs.inner.file('/d/img.qcow2').snapshot());
      expect(qemuImg(['check', final]).status).toBe(0);
      if (!v.v2) expect(new Uint8Array(fs.readFileSync(final))[79]! & 1).toBe(0); // v3's incompatible bits
      expect(statuses.size).toBeGreaterThan(0);
    }, 60_000);
  }
});

describe.skipIf(!QEMU)('fault injection: EIO gives an error, never a corrupt image', () => {
  for (const call of ['write', 'flush'] as const) {
    it(`EIO on the n-th ${call} of the image file`, async () => {
      const v = VARIANTS[0]!;
      const files = makeFiles(v);
      let failures = 0;
      for (let nth = 1; nth <= 24; nth += call === 'write' ? 1 : 2) {
        const mem = new MemoryVfs('/d');
        mem.put('/d/img.qcow2', files.image);
        const vfs: Vfs = new FaultyVfs(mem, [{ call, nth, fault: 'EIO', path: /img\.qcow2$/ }]);
        let failed: unknown;
        try {
          const image = await openImage('/d/img.qcow2', { registry, vfs });
          try {
            for (const step of workload(v.cluster)) await step.run(image);
          } finally {
            await image.close();
          }
        } catch (err) {
          failed = err;
        }
        if (failed !== undefined) {
          failures++;
          expect(isBlockError(failed, 'io')).toBe(true);
        }
        const file = p(`fault-${call}-${nth}.qcow2`);
        fs.writeFileSync(file, mem.file('/d/img.qcow2').snapshot());
        const c = qemuImg(['check', file], [0, 1, 2, 3, 63]);
        expect([0, 3], `EIO on ${call} #${nth}: ${c.out}`).toContain(c.status);
        fs.rmSync(file);
      }
      expect(failures).toBeGreaterThan(0);
    }, 60_000);
  }
});
