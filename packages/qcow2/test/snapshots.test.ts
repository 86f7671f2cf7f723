import * as fs from 'node:fs';
import * as path from 'node:path';
import { isBlockError, NodeVfs, openImage } from '@blk/images';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readSnapshotTable } from '../src/snapshots.js';
import { parseHeader } from '../src/header.js';
import { blk, ensureBuilt, hasCommand, tempDir } from '../../cli/test/helpers.js';
import { qemuTools } from './qemu-tools.js';

const QEMU = hasCommand('qemu-img') && hasCommand('qemu-io');
if (!QEMU) console.warn('qemu-img/qemu-io are not installed: the qcow2 snapshot interop tests are skipped');

let dir: string;
const p = (name: string) => path.join(dir, name);
const env = { TZ: 'UTC' };

const { ok } = qemuTools(() => dir, env);

beforeAll(() => {
  if (!QEMU) return;
  ensureBuilt();
  dir = tempDir('qcow2-snap');
  ok('qemu-img', 'create', '-q', '-f', 'qcow2', 's.qcow2', '4M');
  ok('qemu-io', '-c', 'write -P 0x11 0 1M', 's.qcow2');
  ok('qemu-img', 'snapshot', '-c', 'first', 's.qcow2');
  ok('qemu-io', '-c', 'write -P 0x22 512k 1M', '-c', 'write -z 3M 64k', 's.qcow2');
  ok('qemu-img', 'snapshot', '-c', 'a rather long snapshot name', 's.qcow2');
  ok('qemu-io', '-c', 'write -P 0x33 0 64k', 's.qcow2');
  // compat 0.10: snapshot entries without the v3 extra data.
  ok('qemu-img', 'create', '-q', '-f', 'qcow2', '-o', 'compat=0.10,cluster_size=4k', 'v2.qcow2', '2M');
  ok('qemu-io', '-c', 'write -P 0x44 0 256k', 'v2.qcow2');
  ok('qemu-img', 'snapshot', '-c', 'old', 'v2.qcow2');
  ok('qemu-io', '-c', 'write -P 0x55 0 4k', 'v2.qcow2');
  ok('qemu-img', 'create', '-q', '-f', 'qcow2', 'none.qcow2', '1M');
}, 60_000);

afterAll(() => {
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

describe.skipIf(!QEMU)('qcow2 snapshots: listed and read as qemu-img does', () => {
  it.each(['s.qcow2', 'v2.qcow2', 'none.qcow2'])('%s: blk snapshot -l prints qemu-img snapshot -l', (name) => {
    const b = blk(['snapshot', '-l', p(name)], { env });
    expect(b.code).toBe(0);
    expect(b.stdout).toBe(ok('qemu-img', 'snapshot', '-l', p(name)));
  });

  it.each(['s.qcow2', 'v2.qcow2'])('%s: blk info lists the snapshots as qemu-img info (human and JSON)', (name) => {
    expect(blk(['info', p(name)], { env }).stdout).toBe(ok('qemu-img', 'info', p(name)));
    const q = JSON.parse(ok('qemu-img', 'info', '--output=json', p(name))) as Record<string, unknown>;
    const b = JSON.parse(blk(['info', '--output=json', p(name)], { env }).stdout) as Record<string, unknown>;
    expect(Array.isArray(q.snapshots)).toBe(true);
    expect(b.snapshots).toEqual(q.snapshots);
    expect(b['cluster-size']).toBe(q['cluster-size']);
    expect(b['dirty-flag']).toBe(q['dirty-flag']);
  });

  it.each([
    ['s.qcow2', 'first'],
    ['s.qcow2', '1'],
    ['s.qcow2', 'a rather long snapshot name'],
    ['s.qcow2', 'snapshot.id=2'],
    ['s.qcow2', 'snapshot.name=first'],
    ['v2.qcow2', 'old'],
  ])('%s: blk convert -l %s reads the image as it was then, as qemu-img convert -l', (name, snap) => {
    const q = p(`${name}.q.raw`);
    const b = p(`${name}.b.raw`);
    ok('qemu-img', 'convert', '-l', snap, '-O', 'raw', p(name), q);
    const r = blk(['convert', '-l', snap, '-O', 'raw', p(name), b]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(Buffer.compare(fs.readFileSync(b), fs.readFileSync(q))).toBe(0);
    // And the snapshot differs from the active image (the test would pass vacuously otherwise).
    ok('qemu-img', 'convert', '-O', 'raw', p(name), p('active.raw'));
    expect(Buffer.compare(fs.readFileSync(b), fs.readFileSync(p('active.raw')))).not.toBe(0);
  });

  it('an unknown snapshot is refused (typed), and a snapshot opens read-only only', async () => {
    const r = blk(['convert', '-l', 'nope', '-O', 'raw', p('s.qcow2'), p('x.raw')]);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain("Can't find snapshot 'nope'");
    const err = await openImage(p('s.qcow2'), {
      format: 'qcow2',
      readOnly: false,
      driverOptions: { snapshot: 'first' },
    }).catch((e: unknown) => e);
    expect(isBlockError(err)).toBe(true);
    const img = await openImage(p('s.qcow2'), {
      format: 'qcow2',
      readOnly: true,
      driverOptions: { snapshot: 'first' },
    });
    const buf = await img.read(700 * 1024, 4096);
    expect(buf.every((x) => x === 0x11)).toBe(true);
    await img.close();
  });
});

/** A copy of s.qcow2 with bytes of its snapshot table or header changed. */
function damaged(edit: (b: Buffer, table: number) => void): string {
  const b = fs.readFileSync(p('s.qcow2'));
  edit(b, Number(b.readBigUInt64BE(64)));
  const out = p('bad.qcow2');
  fs.writeFileSync(out, b);
  return out;
}

async function tableOf(file: string) {
  const storage = await new NodeVfs().open(file, { readOnly: true });
  try {
    const size = await storage.size();
    const head = new Uint8Array(65536);
    await storage.read(0, head);
    const h = parseHeader(head, size, { path: file, driver: 'qcow2' });
    return await readSnapshotTable(storage, h, size);
  } finally {
    await storage.close();
  }
}

describe.skipIf(!QEMU)('hostile snapshot tables are refused before use', () => {
  it('the table qemu-img wrote parses: two entries, ids, names, sizes', async () => {
    const t = await tableOf(p('s.qcow2'));
    expect(t.snapshots.map((s) => [s.id, s.name, s.diskSize])).toEqual([
      ['1', 'first', 4 * 2 ** 20],
      ['2', 'a rather long snapshot name', 4 * 2 ** 20],
    ]);
  });

  it.each([
    ['extra data over 1 KiB', (b: Buffer, t: number) => b.writeUInt32BE(4096, t + 36), 'Too much extra metadata'],
    [
      'an unaligned snapshot L1 table',
      (b: Buffer, t: number) => b.writeBigUInt64BE(512n, t),
      'L1 table offset invalid',
    ],
    ['an oversized snapshot L1 table', (b: Buffer, t: number) => b.writeUInt32BE(2 ** 23, t + 8), 'L1 table too large'],
    [
      'a table past the end of the file',
      (b: Buffer) => b.writeBigUInt64BE(BigInt(b.length + 65536), 64),
      'past the end',
    ],
    // Entries read past the table into other data or past the end: whatever is met first refuses it.
    [
      'more entries than the file holds',
      (b: Buffer) => b.writeUInt32BE(60000, 60),
      /past the end|Too much extra metadata|L1 table (offset invalid|too large)/,
    ],
  ])('%s', async (_name, edit, message) => {
    const file = damaged(edit);
    const err = await tableOf(file).catch((e: unknown) => e);
    expect(isBlockError(err)).toBe(true);
    expect((err as Error).message).toMatch(message);
    // The open refuses it too (the table is read at open, as QEMU does).
    const open = await openImage(file, { format: 'qcow2', readOnly: true }).catch((e: unknown) => e);
    expect(isBlockError(open)).toBe(true);
  });

  it('more than 65536 snapshots: refused by the header check', async () => {
    const file = damaged((b) => b.writeUInt32BE(65537, 60));
    const err = await openImage(file, { format: 'qcow2', readOnly: true }).catch((e: unknown) => e);
    expect(isBlockError(err) && err.message).toContain('Too many snapshots');
  });
});
