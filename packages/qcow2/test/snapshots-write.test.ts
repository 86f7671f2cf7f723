/**
 * qcow2 internal snapshots, write side (create, apply, delete), judged by the real qemu-img:
 * - sequences interleaved with writes, over cluster sizes, compat 0.10 and 1.1, refcount_bits 16
 *   and 64, lazy refcounts and a backing file: after each reopen `qemu-img check` exits 0,
 *   `qemu-img snapshot -l` lists blk's snapshots (IDs as QEMU picks them), and
 *   `qemu-img convert [-l NAME] -O raw` reads each snapshot and the active state as a model says;
 * - refcount_bits=1: a snapshot of allocated data is refused before anything changes (QEMU fails
 *   with EINVAL and leaks); a snapshot of an empty image works;
 * - snapshots `qemu-img snapshot -c` made (v2 and v3, one taken at another virtual size), applied
 *   and deleted by blk, judged by `qemu-img check` and `qemu-img compare`;
 * - a seeded random sequence of writes, zeroes, creates, applies and deletes against a model;
 * - crashes at a sample of write points of snapshot create/apply/delete: leaks only, or (create and
 *   delete, which must flip a COPIED bit and a refcount in different clusters) OFLAG_COPIED clear on
 *   a cluster whose refcount is 1, which is harmless; never a COPIED bit on a shared cluster. Every
 *   sector reads old or new, every listed snapshot reads as it was taken.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { DriverRegistry, isBlockError, openImage as openIn, type Image, type MemoryVfs } from '@blk/core';
import { NodeVfs, openImage } from '@blk/images';
import { rawDriver } from '@blk/raw';
import { CrashSimVfs, Rng } from '@blk/faults';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hasCommand, tempDir } from '../../cli/test/helpers.js';
import { qcow2Driver } from '../src/index.js';
import { crashAtPoints, writePoints } from './crash-points.js';
import { parseHeader } from '../src/header.js';
import { readSnapshotTable } from '../src/snapshots.js';
import { pattern } from '@blk/testkit';

const QEMU = hasCommand('qemu-img') && hasCommand('qemu-io');
if (!QEMU) console.warn('qemu-img/qemu-io are not installed: the qcow2 snapshot write tests are skipped');

let dir: string;
const p = (name: string) => path.join(dir, name);

function qemu(cmd: string, args: string[], ok: number[] = [0]): { status: number; out: string; err: string } {
  const r = spawnSync(cmd, args, { cwd: dir, encoding: 'utf8', timeout: 60_000, env: { ...process.env, TZ: 'UTC' } });
  if (!ok.includes(r.status ?? -1)) throw new Error(`${cmd} ${args.join(' ')} (exit ${r.status}): ${r.stderr}`);
  return { status: r.status ?? -1, out: r.stdout, err: r.stderr };
}
const img = (...args: string[]) => qemu('qemu-img', args).out;

/** `qemu-img snapshot -l`'s rows: [ID, TAG]. */
function qemuList(file: string): Array<[string, string]> {
  return img('snapshot', '-l', file)
    .split('\n')
    .slice(2)
    .filter((l) => l.trim() !== '')
    .map((l) => {
      const [id, tag] = l.split(/\s+/);
      return [id!, tag!];
    });
}

/** The raw bytes qemu-img reads from `file` (at snapshot `name`, when given). */
function qemuRaw(file: string, name?: string): Buffer {
  const out = `${file}.${name ?? 'active'}.raw`;
  img('convert', '-U', ...(name !== undefined ? ['-l', `snapshot.name=${name}`] : []), '-O', 'raw', file, out);
  const bytes = fs.readFileSync(out);
  fs.rmSync(out);
  return bytes;
}

/** What the image should hold: the active state and each snapshot's, by name, in table order. */
interface Model {
  active: Uint8Array;
  snapshots: Array<{ id: string; name: string; data: Uint8Array }>;
}

/** qemu-img check exits 0; the snapshot list and every state read as the model says. */
function judge(file: string, model: Model): void {
  const c = qemu('qemu-img', ['check', file], [0, 1, 2, 3, 63]);
  expect(c.status, `${file}: ${c.err}${c.out}`).toBe(0);
  expect(qemuList(file)).toEqual(model.snapshots.map((s) => [s.id, s.name]));
  expect(Buffer.from(model.active).equals(qemuRaw(file)), `${file}: active state`).toBe(true);
  for (const s of model.snapshots) {
    const got = qemuRaw(file, s.name);
    expect(got.length, `${file}: snapshot ${s.name} size`).toBe(s.data.length);
    expect(Buffer.from(s.data).equals(got), `${file}: snapshot ${s.name}`).toBe(true);
  }
}

beforeAll(() => {
  if (QEMU) dir = tempDir('qcow2-snapwrite');
});
afterAll(() => {
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

const SIZE = 2 << 20;

interface Variant {
  name: string;
  options: string;
  cluster: number;
  backing?: boolean;
}

const VARIANTS: Variant[] = [
  { name: 'v3-64k', options: 'cluster_size=65536', cluster: 65536 },
  { name: 'v3-512-rc64', options: 'cluster_size=512,refcount_bits=64', cluster: 512 },
  { name: 'v2-4k', options: 'compat=0.10,cluster_size=4096', cluster: 4096 },
  { name: 'v3-4k-lazy-backing', options: 'cluster_size=4096,lazy_refcounts=on', cluster: 4096, backing: true },
  { name: 'v2-64k-backing', options: 'compat=0.10', cluster: 65536, backing: true },
];

function makeImage(v: Variant, name: string): Uint8Array {
  fs.rmSync(p(name), { force: true });
  if (v.backing) {
    const base = pattern(SIZE, 99);
    fs.writeFileSync(p('base.raw'), base);
    img('create', '-q', '-f', 'qcow2', '-o', v.options, '-b', 'base.raw', '-F', 'raw', name, String(SIZE));
    return base.slice();
  }
  img('create', '-q', '-f', 'qcow2', '-o', v.options, name, String(SIZE));
  return new Uint8Array(SIZE);
}

async function withImage<T>(file: string, fn: (image: Image) => Promise<T>): Promise<T> {
  const image = await openImage(file);
  try {
    return await fn(image);
  } finally {
    await image.close();
  }
}

/** Steps against an image and the model, kept in step. */
function ops(model: Model) {
  let nextId = model.snapshots.reduce((m, s) => Math.max(m, Number(s.id)), 0) + 1;
  return {
    write: async (im: Image, offset: number, length: number, seed: number, compress = false) => {
      const data = pattern(length, seed);
      await im.write(offset, data, compress ? { compress: true } : undefined);
      model.active.set(data, offset);
    },
    zero: async (im: Image, offset: number, length: number) => {
      await im.writeZeroes(offset, length);
      model.active.fill(0, offset, offset + length);
    },
    create: async (im: Image, name: string) => {
      await im.snapshot({ action: 'create', name });
      model.snapshots.push({ id: String(nextId++), name, data: model.active.slice() });
    },
    apply: async (im: Image, name: string) => {
      await im.snapshot({ action: 'apply', snapshot: name });
      model.active = model.snapshots.find((s) => s.name === name)!.data.slice();
    },
    remove: async (im: Image, name: string) => {
      await im.snapshot({ action: 'delete', snapshot: name });
      model.snapshots = model.snapshots.filter((s) => s.name !== name);
    },
  };
}

describe.skipIf(!QEMU)('snapshots blk makes, applies and deletes: qemu-img agrees', () => {
  for (const v of VARIANTS) {
    it(v.name, async () => {
      const file = p(`${v.name}.qcow2`);
      const model: Model = { active: makeImage(v, `${v.name}.qcow2`), snapshots: [] };
      const o = ops(model);
      const cs = v.cluster;
      await withImage(file, async (im) => {
        await o.write(im, 1000, 3000, 1); // partial cluster over the backing file or zeros
        await o.write(im, cs * 4, cs * 3, 2);
        await o.write(im, 1 << 20, 5000, 3); // another L2 table with small clusters
        await o.write(im, cs * 12, cs * 2, 4, true); // compressed
        await o.create(im, 'first');
        await o.write(im, cs * 4 + 512, 1024, 5); // a shared cluster: copied, not written in place
        await o.write(im, 1500, 100, 6);
        await o.zero(im, cs * 5, cs);
        await o.write(im, cs * 12 + 7, 300, 7); // into a shared compressed cluster
      });
      judge(file, model);
      // QEMU writing after blk's snapshot: the shared cluster is copied (COPIED was cleared), not overwritten.
      qemu('qemu-io', ['-c', `write -P 0x5a 1024 512`, '-c', `write -P 0x5b ${cs * 12} 512`, file]);
      model.active.fill(0x5a, 1024, 1536);
      model.active.fill(0x5b, cs * 12, cs * 12 + 512);
      judge(file, model);
      await withImage(file, async (im) => {
        await o.create(im, 'second');
        await o.write(im, cs * 20, cs, 8);
        await o.apply(im, 'first');
        await o.write(im, 0, 4096, 9);
        await o.create(im, 'third');
        await o.remove(im, 'second');
        await o.write(im, cs * 4, 700, 10);
      });
      judge(file, model);
      await withImage(file, async (im) => {
        await o.remove(im, 'first');
        await o.apply(im, 'third');
        await o.write(im, cs * 4, cs, 11); // in place again once no snapshot shares it? not here: 'third' does
        await o.remove(im, 'third');
        await o.write(im, cs * 4 + 100, 100, 12); // every cluster is the active image's alone again
      });
      judge(file, model);
      // With no snapshot left, the table is gone from the header, as QEMU leaves it.
      const head = fs.readFileSync(file);
      expect([head.readUInt32BE(60), Number(head.readBigUInt64BE(64))]).toEqual([0, 0]);
    }, 60_000);
  }

  it('refcount_bits=1: a snapshot of allocated data is refused before anything changes', async () => {
    img('create', '-q', '-f', 'qcow2', '-o', 'refcount_bits=1,cluster_size=4096', 'rc1.qcow2', '1M');
    const file = p('rc1.qcow2');
    const model: Model = { active: new Uint8Array(1 << 20), snapshots: [] };
    const o = ops(model);
    // An empty image has nothing to share: its snapshot works, and writes after it too.
    await withImage(file, async (im) => {
      await o.create(im, 'empty');
      await o.write(im, 8192, 5000, 1);
    });
    judge(file, model);
    const before = fs.readFileSync(file);
    await withImage(file, async (im) => {
      const err = await im.snapshot({ action: 'create', name: 'full' }).catch((e: unknown) => e);
      expect(isBlockError(err, 'invalid-argument')).toBe(true);
      expect(String(err)).toMatch(/would exceed 1 \(refcount_bits=1\)/);
    });
    expect(fs.readFileSync(file).equals(before)).toBe(true);
    judge(file, model);
    // Applying the empty snapshot and deleting it are fine (they only lower refcounts of the old state).
    await withImage(file, async (im) => {
      await o.apply(im, 'empty');
      await o.remove(im, 'empty');
    });
    judge(file, model);
  }, 30_000);

  it('refcount_bits=2: compressed payloads sharing a cluster count once per descriptor', async () => {
    img('create', '-q', '-f', 'qcow2', '-o', 'refcount_bits=2,cluster_size=4096', 'rc2.qcow2', '1M');
    // Two compressible clusters: their payloads share one host cluster (refcount 2).
    qemu('qemu-io', ['-c', 'write -c -P 0x11 0 8k', 'rc2.qcow2']);
    const file = p('rc2.qcow2');
    const before = fs.readFileSync(file);
    await withImage(file, async (im) => {
      // Each descriptor adds a reference: 2 + 2 > 3, though 2 + 1 would fit.
      const err = await im.snapshot({ action: 'create', name: 's' }).catch((e: unknown) => e);
      expect(String(err)).toMatch(/would exceed 3 \(refcount_bits=2\)/);
    });
    expect(fs.readFileSync(file).equals(before)).toBe(true);
  });

  it('snapshots qemu-img made (v2 and v3, one at another size): applied and deleted by blk', async () => {
    for (const compat of ['0.10', '1.1']) {
      const name = `q${compat}.qcow2`;
      const file = p(name);
      img('create', '-q', '-f', 'qcow2', '-o', `compat=${compat},cluster_size=4096`, name, '1M');
      qemu('qemu-io', ['-c', 'write -P 0x11 0 300k', '-c', 'write -c -P 0x12 512k 64k', name]);
      img('snapshot', '-c', 'one', name);
      const one = qemuRaw(file, 'one');
      qemu('qemu-io', ['-c', 'write -P 0x21 4k 8k', '-c', 'write -P 0x22 700k 4k', name]);
      img('snapshot', '-c', 'two', name);
      const two = qemuRaw(file, 'two');
      // QEMU 7.2 grows v3 images with snapshots (not v2): the snapshot keeps its own disk size.
      if (compat === '1.1') {
        img('resize', name, '2M');
        qemu('qemu-io', ['-c', 'write -P 0x31 1500k 100k', name]);
      }
      await withImage(file, async (im) => {
        await im.snapshot({ action: 'apply', snapshot: 'one' });
        // The snapshot's size comes back with it.
        expect(im.size).toBe(1 << 20);
      });
      expect(qemu('qemu-img', ['check', name], [0, 1, 2, 3]).status).toBe(0);
      fs.writeFileSync(p('one.raw'), one);
      expect(qemu('qemu-img', ['compare', '-f', 'qcow2', '-F', 'raw', name, 'one.raw'], [0, 1]).status).toBe(0);
      await withImage(file, async (im) => {
        await im.write(0, pattern(4096, 5));
        await im.snapshot({ action: 'delete', snapshot: 'one' });
        await im.snapshot({ action: 'apply', snapshot: '2' }); // by ID
        await im.write(8192, pattern(4096, 6));
      });
      expect(qemu('qemu-img', ['check', name], [0, 1, 2, 3]).status).toBe(0);
      expect(qemuList(file)).toEqual([['2', 'two']]);
      const want = Buffer.from(two);
      want.set(pattern(4096, 6), 8192);
      expect(qemuRaw(file).equals(want)).toBe(true);
      expect(qemuRaw(file, 'two').equals(two)).toBe(true);
      // And QEMU carries on from what blk left: another snapshot, then deleting blk's survivor.
      img('snapshot', '-c', 'three', name);
      img('snapshot', '-d', 'two', name);
      expect(qemu('qemu-img', ['check', name], [0, 1, 2, 3]).status).toBe(0);
    }
  }, 30_000);

  it('a seeded random sequence of writes, zeroes, creates, applies and deletes matches a model', async () => {
    const v: Variant = { name: 'random', options: 'cluster_size=4096', cluster: 4096, backing: true };
    const file = p('random.qcow2');
    const model: Model = { active: makeImage(v, 'random.qcow2'), snapshots: [] };
    const o = ops(model);
    const rng = new Rng(0x5eed);
    let made = 0;
    let im = await openImage(file);
    try {
      for (let step = 0; step < 60; step++) {
        const r = rng.int(100);
        if (r < 50) {
          const len = 1 + rng.int(20000);
          await o.write(im, rng.int(SIZE - len), len, step + 1, false);
        } else if (r < 60) {
          const c = rng.int(SIZE / 4096 - 4);
          await o.zero(im, c * 4096, 4096 * (1 + rng.int(3)));
        } else if (r < 75 && model.snapshots.length < 5) {
          await o.create(im, `s${made++}`);
        } else if (r < 88 && model.snapshots.length > 0) {
          await o.apply(im, model.snapshots[rng.int(model.snapshots.length)]!.name);
        } else if (model.snapshots.length > 0) {
          await o.remove(im, model.snapshots[rng.int(model.snapshots.length)]!.name);
        }
        if (step % 20 === 19) {
          await im.close();
          judge(file, model);
          im = await openImage(file);
        }
      }
    } finally {
      await im.close();
    }
    expect(made).toBeGreaterThan(3);
    judge(file, model);
    // QEMU takes over blk's snapshots: qemu-img applies one and deletes another.
    expect(model.snapshots.length).toBeGreaterThan(0);
    const first = model.snapshots[0]!;
    img('snapshot', '-a', first.name, 'random.qcow2');
    model.active = first.data.slice();
    const last = model.snapshots[model.snapshots.length - 1]!;
    img('snapshot', '-d', last.name, 'random.qcow2');
    model.snapshots = model.snapshots.filter((s) => s !== last);
    judge(file, model);
  }, 60_000);
});

async function tableOf(file: string) {
  const storage = await new NodeVfs().open(file, { readOnly: true });
  try {
    const size = await storage.size();
    const head = new Uint8Array(65536);
    await storage.read(0, head);
    return await readSnapshotTable(storage, parseHeader(head, size, { path: file, driver: 'qcow2' }), size);
  } finally {
    await storage.close();
  }
}

describe.skipIf(!QEMU)('the snapshot API: lookups, refusals, the table rewritten as QEMU 7.2 writes it', () => {
  it('typed refusals; apply by ID then name, delete by name or snapshot.id=', async () => {
    img('create', '-q', '-f', 'qcow2', 'api.qcow2', '1M');
    const file = p('api.qcow2');
    await withImage(file, async (im) => {
      await im.snapshot({ action: 'create', name: '2', dateSec: 1234, dateNsec: 5678 }); // ID 1, named '2'
      await im.snapshot({ action: 'create', name: 'x' }); // ID 2
      const unknown = await im.snapshot({ action: 'apply', snapshot: 'nope' }).catch((e: unknown) => e);
      expect(isBlockError(unknown, 'invalid-argument')).toBe(true);
      expect([(unknown as { code?: string }).code, (unknown as { field?: string }).field]).toEqual([
        'ENOENT',
        'snapshot',
      ]);
      // delete '2' means the name: ID 1 goes, ID 2 ('x') stays.
      await im.snapshot({ action: 'delete', snapshot: '2' });
      expect(im.info().extras?.snapshots?.map((s) => [s.id, s.name])).toEqual([['2', 'x']]);
      const byId = await im.snapshot({ action: 'delete', snapshot: '1' }).catch((e: unknown) => e);
      expect((byId as { code?: string }).code).toBe('ENOENT');
      await im.snapshot({ action: 'create', name: 'y' }); // IDs go on from the largest: 3
      await im.snapshot({ action: 'delete', snapshot: 'snapshot.id=2' });
      expect(im.info().extras?.snapshots?.map((s) => [s.id, s.name])).toEqual([['3', 'y']]);
    });
    const ro = await openImage(file, { readOnly: true });
    try {
      const err = await ro.snapshot({ action: 'create', name: 'z' }).catch((e: unknown) => e);
      expect(isBlockError(err, 'read-only')).toBe(true);
    } finally {
      await ro.close();
    }
    fs.writeFileSync(p('api.raw'), new Uint8Array(4096));
    const raw = await openImage(p('api.raw'), { format: 'raw' });
    try {
      expect(raw.snapshottable).toBe(false);
      const err = await raw.snapshot({ action: 'create', name: 'z' }).catch((e: unknown) => e);
      expect(isBlockError(err, 'not-supported')).toBe(true);
    } finally {
      await raw.close();
    }
    expect(qemu('qemu-img', ['check', 'api.qcow2'], [0, 1, 2, 3]).status).toBe(0);
  });

  it('extra data QEMU 7.2 does not know is kept; the fields are those qemu-img writes', async () => {
    img('create', '-q', '-f', 'qcow2', 'extra.qcow2', '1M');
    img('snapshot', '-c', 'q', 'extra.qcow2');
    const file = p('extra.qcow2');
    // The entry gains 8 bytes of extra data past QEMU's 24 (in place: the table stays in its cluster).
    // QEMU's file ends where the table does: it is padded to its cluster's end first.
    const read = fs.readFileSync(file);
    const b = Buffer.concat([read, Buffer.alloc(65536 - (read.length % 65536))]);
    const at = Number(b.readBigUInt64BE(64));
    const entry = b.subarray(at, at + 40 + 24 + 2);
    const grown = Buffer.concat([entry.subarray(0, 64), Buffer.from('UNKNOWN!'), entry.subarray(64)]);
    grown.writeUInt32BE(32, 36);
    grown.copy(b, at);
    fs.writeFileSync(file, b);
    expect(qemu('qemu-img', ['check', 'extra.qcow2'], [0, 1, 2, 3]).status).toBe(0);
    await withImage(file, (im) => im.snapshot({ action: 'create', name: 'b', dateSec: 1e9, dateNsec: 123_000 }));
    const t = await tableOf(file);
    expect(t.snapshots.map((s) => [s.id, s.name, s.extraDataSize])).toEqual([
      ['1', 'q', 32],
      ['2', 'b', 24],
    ]);
    expect(Buffer.from(t.snapshots[0]!.unknownExtra!).toString()).toBe('UNKNOWN!');
    const sn = t.snapshots[1]!;
    expect([sn.dateSec, sn.dateNsec, sn.vmClockNsec, sn.vmStateSize, sn.diskSize, sn.icount]).toEqual([
      1e9,
      123_000,
      0,
      0,
      1 << 20,
      0,
    ]);
    expect(qemuList(file)).toEqual([
      ['1', 'q'],
      ['2', 'b'],
    ]);
    expect(qemu('qemu-img', ['check', 'extra.qcow2'], [0, 1, 2, 3]).status).toBe(0);
  });
});

/** Lines of `qemu-img check` that report a COPIED bit clear on a cluster whose refcount is 1 (harmless). */
function onlyHarmlessCopied(out: string): boolean {
  const errors = out.split('\n').filter((l) => l.startsWith('ERROR'));
  return errors.every((l) => {
    const m =
      /^ERROR OFLAG_COPIED (?:data cluster: l2_entry|L2 cluster: l1_index=\d+ l1_entry)=([0-9a-f]+) refcount=1$/.exec(
        l,
      );
    return m !== null && BigInt(`0x${m[1]}`) < 1n << 63n;
  });
}

describe.skipIf(!QEMU)('crashes during snapshot create, apply and delete', () => {
  it.each([
    ['v3, 4 KiB clusters', 'cluster_size=4096'],
    ['v2, 512 B clusters', 'compat=0.10,cluster_size=512'],
  ])(
    '%s: leaks only (or a COPIED bit clear at refcount 1), every sector old or new, snapshots intact',
    async (_, options) => {
      const registry = new DriverRegistry([qcow2Driver, rawDriver]);
      const size = 1 << 20;
      img('create', '-q', '-f', 'qcow2', '-o', options, 'crash.qcow2', String(size));
      const vfs = new CrashSimVfs({ cwd: '/d' });
      vfs.put('/d/img.qcow2', new Uint8Array(fs.readFileSync(p('crash.qcow2'))));
      vfs.syncAll();
      const image = await openIn('/d/img.qcow2', { registry, vfs });
      let active = new Uint8Array(size);
      const versions: Uint8Array[] = [active.slice()];
      const taken = new Map<string, Uint8Array>();
      const write = async (offset: number, length: number, seed: number) => {
        await image.write(offset, pattern(length, seed));
        active.set(pattern(length, seed), offset);
        versions.push(active.slice());
      };
      await write(0, 200_000, 1);
      await write(600_000, 9000, 2);
      await image.flush();
      const start = vfs.log.length;
      await image.snapshot({ action: 'create', name: 'a' });
      taken.set('a', active.slice());
      await write(4096, 8192, 3);
      await image.snapshot({ action: 'create', name: 'b' });
      taken.set('b', active.slice());
      await write(100_000, 5000, 4);
      await image.snapshot({ action: 'apply', snapshot: 'a' });
      active = taken.get('a')!.slice();
      versions.push(active.slice());
      await image.snapshot({ action: 'delete', snapshot: 'b' });
      await image.close();
      const points = writePoints(vfs.log, start);
      expect(points.length).toBeGreaterThan(20);
      const sample = Array.from({ length: 10 }, (_, k) => points[Math.floor((k * (points.length - 1)) / 9)]!);
      const allowed: Array<Set<string>> = [];
      const key = (b: Uint8Array) => Buffer.from(b).toString('base64');
      for (let s = 0; s < size / 512; s++) {
        allowed.push(new Set(versions.map((ver) => key(ver.subarray(s * 512, (s + 1) * 512)))));
      }
      const statuses = new Set<number>();
      let n = 0;
      const inspect = (crashed: MemoryVfs): string | undefined => {
        const file = p(`crash-${n++}.qcow2`);
        fs.writeFileSync(file, crashed.file('/d/img.qcow2').snapshot());
        const c = qemu('qemu-img', ['check', file], [0, 1, 2, 3, 63]);
        statuses.add(c.status);
        if (c.status !== 0 && c.status !== 3 && !(c.status === 2 && onlyHarmlessCopied(c.err + c.out))) {
          return `qemu-img check exit ${c.status}: ${c.err}${c.out}`;
        }
        const got = qemuRaw(file);
        for (let s = 0; s < size / 512; s++) {
          if (!allowed[s]!.has(key(got.subarray(s * 512, (s + 1) * 512))))
            return `sector ${s} holds neither an old nor a new content`;
        }
        for (const [, tag] of qemuList(file)) {
          const want = taken.get(tag);
          if (want === undefined) return `unexpected snapshot ${tag}`;
          if (!qemuRaw(file, tag).equals(want)) return `snapshot ${tag} does not read as it was taken`;
        }
        if (c.status === 2) {
          // The harmless error is one check -r all repairs.
          qemu('qemu-img', ['check', '-r', 'all', file], [0, 3]);
          if (qemu('qemu-img', ['check', file], [0, 1, 2, 3]).status !== 0) return 'check -r all left errors';
        }
        fs.rmSync(file);
        return undefined;
      };
      const { states, violations } = await crashAtPoints(vfs.log, [...new Set(sample)], new Rng(0xc0ffee), 2, inspect);
      expect(violations).toEqual([]);
      expect(states).toBeGreaterThan(9);
      console.log(`snapshot crash states: ${states}, qemu-img check exit codes seen: ${[...statuses].join(', ')}`);
      const final = p('crash-final.qcow2');
      fs.writeFileSync(final, vfs.inner.file('/d/img.qcow2').snapshot());
      expect(qemu('qemu-img', ['check', final], [0, 1, 2, 3]).status).toBe(0);
      expect(qemuList(final).map(([, t]) => t)).toEqual(['a']);
    },
    90_000,
  );
});
