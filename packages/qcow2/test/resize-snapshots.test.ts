/**
 * Resizing a qcow2 image that has internal snapshots, as QEMU 7.2 does: v3 images grow and shrink
 * (the active L1 only; every snapshot keeps its own size and data, and clusters the active image
 * shares with a snapshot lose one reference, not their data), v2 images are refused with qemu-img's
 * message. Judged by doing the same on a copy with qemu-img and comparing, and by `qemu-img check`.
 */
import * as fs from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { blk, ensureBuilt, hasCommand, tempDir } from '../../cli/test/helpers.js';
import { qemuTools } from './qemu-tools.js';

const QEMU = hasCommand('qemu-img') && hasCommand('qemu-io');
if (!QEMU) console.warn('qemu-img/qemu-io are not installed: the qcow2 resize-with-snapshots tests are skipped');

let dir: string;
const q = qemuTools(() => dir);

beforeAll(() => {
  if (!QEMU) return;
  ensureBuilt();
  dir = tempDir('qcow2-resize-snap');
}, 60_000);

afterAll(() => {
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

/** An image with data at both ends of 4 MiB, a snapshot of it, then more writes on the active state. */
function snapshotted(name: string, compat: string): void {
  q.img('create', '-q', '-f', 'qcow2', '-o', `compat=${compat},cluster_size=4096`, name, '4M');
  q.io(name, 'write -P 0x11 0 64k', 'write -P 0x22 3968k 128k');
  q.img('snapshot', '-c', 'before', name);
  q.io(name, 'write -P 0x33 32k 64k', 'write -P 0x44 3m 64k');
}

let copies = 0;
/** qemu-img's raw view of `file` (with `-l NAME`: of a snapshot, at the active image's size, as qemu-img gives it). */
const raw = (file: string, ...args: string[]): Buffer => {
  const out = `${file}.${++copies}.raw`;
  q.img('convert', ...args, '-O', 'raw', file, out);
  return fs.readFileSync(q.p(out));
};

describe.skipIf(!QEMU)('qcow2 resize with internal snapshots', () => {
  it('v3: blk grows and shrinks as qemu-img does; the snapshot keeps its size and data', () => {
    for (const name of ['b.qcow2', 'q.qcow2']) snapshotted(name, '1.1');
    const snapshotData = raw('b.qcow2', '-l', 'before');
    for (const [args, size] of [
      [['12M'], 12 << 20],
      [['--shrink', '2M'], 2 << 20],
      [['+1M'], 3 << 20],
    ] as const) {
      const r = blk(['resize', q.p('b.qcow2'), ...args]);
      expect(r.stderr).toBe('');
      expect(r.code).toBe(0);
      q.img('resize', '-q', q.p('q.qcow2'), ...args);
      expect(JSON.parse(q.img('info', '--output=json', 'b.qcow2'))['virtual-size']).toBe(size);
      expect(raw('b.qcow2').equals(raw('q.qcow2'))).toBe(true);
      expect(raw('b.qcow2', '-l', 'before').equals(raw('q.qcow2', '-l', 'before'))).toBe(true);
      expect(q.run('qemu-img', ['check', 'b.qcow2'])).toMatch(/No errors were found/);
    }
    // Reverting gives the 4 MiB image of the snapshot back, on blk's image as on qemu-img's.
    q.img('snapshot', '-a', 'before', 'b.qcow2');
    expect(JSON.parse(q.img('info', '--output=json', 'b.qcow2'))['virtual-size']).toBe(4 << 20);
    expect(raw('b.qcow2').equals(snapshotData)).toBe(true);
    q.img('check', 'b.qcow2');
  });

  it("v2: refused with qemu-img's message and exit code, the file untouched", () => {
    snapshotted('v2.qcow2', '0.10');
    const before = fs.readFileSync(q.p('v2.qcow2'));
    const r = blk(['resize', q.p('v2.qcow2'), '8M']);
    expect(r.code).toBe(1);
    expect(r.stderr).toBe(`blk: ${q.p('v2.qcow2')}: Can't resize a v2 image which has snapshots\n`);
    expect(fs.readFileSync(q.p('v2.qcow2')).equals(before)).toBe(true);
  });
});
