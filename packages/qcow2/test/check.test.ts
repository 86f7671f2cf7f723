/**
 * `blk check` on qcow2 against `qemu-img check`: images made by qemu-img/qemu-io (with data,
 * compressed clusters and snapshots), then corrupted by hand in the test (refcounts too high or
 * too low, COPIED flags wrong, a data cluster unaligned or past the end of the file, metadata
 * overlapping, the refcount table emptied, a refcount block unaligned). Both tools must print the
 * same problems, the same JSON report and exit with the same code (0/1/2/3). Repairs (`-r leaks`,
 * `-r all`, including the rebuild of a broken refcount structure) fix the same counts as qemu-img's
 * and leave an image `qemu-img check` passes.
 */
import * as fs from 'node:fs';
import { NodeVfs, openImage } from '@blk/images';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { checkQcow2Storage } from '../src/check.js';
import { blk, ensureBuilt, hasCommand, tempDir } from '../../cli/test/helpers.js';
import { qemuTools } from './qemu-tools.js';

const QEMU = hasCommand('qemu-img') && hasCommand('qemu-io');
if (!QEMU) console.warn('qemu-img/qemu-io are not installed: the qcow2 check interop tests are skipped');

let dir: string;
const { spawn: run, ok, p } = qemuTools(() => dir);

/** A 64 MiB image: 256 KiB of data (clusters 5..8), one compressed cluster, an L2 table at cluster 4. */
const BASE = 'base.qcow2';
const SNAP = 'snap.qcow2';

beforeAll(() => {
  if (!QEMU) return;
  ensureBuilt();
  dir = tempDir('qcow2-check');
  ok('qemu-img', 'create', '-q', '-f', 'qcow2', BASE, '64M');
  ok('qemu-io', '-c', 'write -P 1 0 256k', '-c', 'write -c -P 2 1M 64k', BASE);
  ok('qemu-img', 'create', '-q', '-f', 'qcow2', '-o', 'cluster_size=4k,refcount_bits=4', SNAP, '8M');
  ok('qemu-io', '-c', 'write -P 3 0 64k', SNAP);
  ok('qemu-img', 'snapshot', '-c', 'one', SNAP);
  ok('qemu-io', '-c', 'write -P 4 16k 16k', '-c', 'write -P 5 1M 8k', SNAP);
  ok('qemu-img', 'snapshot', '-c', 'two', SNAP);
}, 60_000);

afterAll(() => {
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

/** Byte surgery on a copy of an image. */
class Surgery {
  readonly b: Buffer;
  readonly cs: number;
  constructor(readonly file: string) {
    this.b = fs.readFileSync(file);
    this.cs = 2 ** this.b.readUInt32BE(20);
  }
  get reftable(): number {
    return Number(this.b.readBigUInt64BE(48));
  }
  get refblock(): number {
    return Number(this.b.readBigUInt64BE(this.reftable));
  }
  get l1(): number {
    return Number(this.b.readBigUInt64BE(40));
  }
  get l2(): number {
    return Number(this.b.readBigUInt64BE(this.l1) & 0x00ff_ffff_ffff_fe00n);
  }
  /** Sets the 16-bit refcount of cluster `i`. */
  refcount(i: number, v: number): this {
    this.b.writeUInt16BE(v, this.refblock + 2 * i);
    return this;
  }
  l2Entry(i: number, f: (e: bigint) => bigint): this {
    const at = this.l2 + 8 * i;
    this.b.writeBigUInt64BE(f(this.b.readBigUInt64BE(at)), at);
    return this;
  }
  u64(at: number, v: bigint): this {
    this.b.writeBigUInt64BE(v, at);
    return this;
  }
  save(to: string): string {
    fs.writeFileSync(to, this.b);
    return to;
  }
}

const COPIED = 1n << 63n;
type Damage = (s: Surgery) => Surgery;

/** name → what is done to a copy of BASE (clusters: 0 header, 1 reftable, 2 refblock, 3 L1, 4 L2, 5-8 data, 9 compressed). */
const DAMAGES: Record<string, Damage> = {
  clean: (s) => s,
  'refcount too high (a leak; the L2 table loses COPIED)': (s) => s.refcount(4, 2),
  'refcount of a data cluster 0': (s) => s.refcount(6, 0),
  'refcount of the header 0': (s) => s.refcount(0, 0),
  'COPIED flag missing on a data cluster': (s) => s.l2Entry(0, (e) => e & ~COPIED),
  'COPIED flag set on a compressed cluster': (s) => s.l2Entry(16, (e) => e | COPIED),
  'data cluster offset unaligned': (s) => s.l2Entry(1, (e) => e + 512n),
  'data cluster past the end of the file': (s) => s.l2Entry(2, () => COPIED | BigInt(s.b.length + 20 * s.cs)),
  'two L2 entries on one cluster (overlap)': (s) => s.l2Entry(3, () => COPIED | BigInt(5 * s.cs)),
  'L2 entry pointing into the L1 table (metadata overlap)': (s) => s.l2Entry(3, () => COPIED | BigInt(3 * s.cs)),
  'L2 entry with reserved bits': (s) => s.l2Entry(0, (e) => e | 0x2n),
  'refcount table emptied': (s) => s.u64(s.reftable, 0n),
  'refcount block unaligned': (s) => s.u64(s.reftable, BigInt(s.refblock + 512)),
};

/** stderr without the program's name prefix, for comparing qemu-img's lines with blk's. */
const lines = (stderr: string) =>
  stderr
    .split('\n')
    .filter(Boolean)
    .map((l) => l.replace(/^(qemu-img|blk): /, ''));

describe.skipIf(!QEMU)('blk check judges qcow2 images as qemu-img check does', () => {
  it.each(Object.keys(DAMAGES))('%s: same problems, JSON report and exit code', (name) => {
    const file = DAMAGES[name]!(new Surgery(p(BASE))).save(p('d.qcow2'));
    const q = run('qemu-img', ['check', '--output=json', file]);
    const b = blk(['check', '--output=json', file]);
    expect(b.code).toBe(q.status);
    expect(lines(b.stderr)).toEqual(lines(q.stderr));
    if (q.stdout) expect(JSON.parse(b.stdout)).toEqual(JSON.parse(q.stdout));
    const qh = run('qemu-img', ['check', file]);
    const bh = blk(['check', file]);
    expect(bh.stdout).toBe(qh.stdout);
  });

  it('an image with two snapshots (shared clusters, refcounts above 1, 4-bit refcounts) checks clean', () => {
    const q = run('qemu-img', ['check', '--output=json', p(SNAP)]);
    const b = blk(['check', '--output=json', p(SNAP)]);
    expect(q.status).toBe(0);
    expect(b.code).toBe(0);
    expect(JSON.parse(b.stdout)).toEqual(JSON.parse(q.stdout));
  });

  it('hostile: every L1 entry of a 2 TiB image names the same L2 table (same report, in bounded time)', () => {
    ok('qemu-img', 'create', '-q', '-f', 'qcow2', 'wide.qcow2', '2T');
    ok('qemu-io', '-c', 'write 0 64k', 'wide.qcow2');
    const s = new Surgery(p('wide.qcow2'));
    const entry = s.b.readBigUInt64BE(s.l1);
    const n = s.b.readUInt32BE(36);
    for (let i = 0; i < n; i++) s.b.writeBigUInt64BE(entry, s.l1 + 8 * i);
    const file = s.save(p('wide.qcow2'));
    const q = run('qemu-img', ['check', '--output=json', file]);
    const started = Date.now();
    const b = blk(['check', '--output=json', file]);
    expect(Date.now() - started).toBeLessThan(20_000);
    expect(b.code).toBe(q.status);
    expect(lines(b.stderr)).toEqual(lines(q.stderr));
    expect(JSON.parse(b.stdout)).toEqual(JSON.parse(q.stdout));
  });

  it('a snapshot cluster whose refcount dropped is found in the snapshot walk', () => {
    // The first data cluster is shared by the active L2 and both snapshots: refcount 3 → 1.
    const s = new Surgery(p(SNAP));
    const first = Number(s.b.readBigUInt64BE(s.l2) & 0x00ff_ffff_ffff_fe00n) / s.cs;
    const rb = s.refblock;
    const byte = rb + (first >> 1);
    const shift = 4 * (first & 1);
    expect((s.b[byte]! >> shift) & 15).toBe(3);
    s.b[byte] = (s.b[byte]! & ~(15 << shift)) | (1 << shift);
    const file = s.save(p('snapd.qcow2'));
    const q = run('qemu-img', ['check', '--output=json', file]);
    const b = blk(['check', '--output=json', file]);
    expect(q.status).toBe(2);
    expect(b.code).toBe(2);
    expect(lines(b.stderr)).toEqual(lines(q.stderr));
    expect(JSON.parse(b.stdout)).toEqual(JSON.parse(q.stdout));
  });
});

/** Repairs through the driver's check on a writable storage (what `blk check -r` calls). */
async function repair(file: string, mode: 'leaks' | 'all') {
  const storage = await new NodeVfs().open(file, { readOnly: false });
  try {
    return await checkQcow2Storage(storage, { leaks: true, corruptions: mode === 'all' });
  } finally {
    await storage.close();
  }
}

const REPAIRS: [string, 'leaks' | 'all', boolean][] = [
  ['refcount too high (a leak; the L2 table loses COPIED)', 'leaks', true],
  ['refcount too high (a leak; the L2 table loses COPIED)', 'all', true],
  ['COPIED flag missing on a data cluster', 'leaks', true],
  ['refcount of a data cluster 0', 'all', true],
  ['refcount of the header 0', 'all', true],
  ['two L2 entries on one cluster (overlap)', 'all', false],
  ['refcount table emptied', 'all', true],
];

describe.skipIf(!QEMU)('check -r repairs qcow2 images as qemu-img check -r does', () => {
  it.each(REPAIRS)('%s, -r %s: same fixed counts; qemu-img check passes afterwards', async (name, mode, clean) => {
    const mine = DAMAGES[name]!(new Surgery(p(BASE))).save(p('r.qcow2'));
    const theirs = DAMAGES[name]!(new Surgery(p(BASE))).save(p('q.qcow2'));
    const q = run('qemu-img', ['check', '-r', mode, '--output=json', theirs]);
    const r = await repair(mine, mode);
    const qj = JSON.parse(q.stdout) as Record<string, number | undefined>;
    expect(r.leaksFixed).toBe(qj['leaks-fixed'] ?? 0);
    expect(r.corruptionsFixed).toBe(qj['corruptions-fixed'] ?? 0);
    const after = run('qemu-img', ['check', mine]);
    expect(after.status).toBe(run('qemu-img', ['check', theirs]).status);
    if (clean) expect(after.status).toBe(0);
    // The data reads the same after either repair.
    ok('qemu-img', 'convert', '-O', 'raw', mine, p('mine.raw'));
    ok('qemu-img', 'convert', '-O', 'raw', theirs, p('theirs.raw'));
    expect(Buffer.compare(fs.readFileSync(p('mine.raw')), fs.readFileSync(p('theirs.raw')))).toBe(0);
  });

  it('-r leaks refuses to rebuild a broken refcount structure (check error, exit 1), as qemu-img', async () => {
    const file = DAMAGES['refcount table emptied']!(new Surgery(p(BASE))).save(p('nr.qcow2'));
    const r = await repair(file, 'leaks');
    expect(r.checkErrors).toBe(1);
    expect(r.messages).toContain('ERROR need to rebuild refcount structures');
    const q = run('qemu-img', [
      'check',
      '-r',
      'leaks',
      DAMAGES['refcount table emptied']!(new Surgery(p(BASE))).save(p('nq.qcow2')),
    ]);
    expect(q.status).toBe(1);
    expect(q.stderr).toContain('ERROR need to rebuild refcount structures');
  });

  it('blk check -r all (spawned) repairs and double-checks, once the driver can open qcow2 for writing', async (ctx) => {
    const file = DAMAGES['refcount of a data cluster 0']!(new Surgery(p(BASE))).save(p('cli.qcow2'));
    const writable = await openImage(file, { format: 'qcow2', readOnly: false }).then(
      async (img) => {
        await img.close();
        return true;
      },
      () => false,
    );
    if (!writable) {
      console.warn('qcow2 cannot be opened for writing in this build (no write engine): blk check -r is not run');
      ctx.skip();
      return;
    }
    const b = blk(['check', '-r', 'all', file]);
    expect(b.stdout).toContain('Double checking the fixed image now...');
    expect(b.code).toBe(0);
    expect(run('qemu-img', ['check', file]).status).toBe(0);
  });
});
