/**
 * The qcow2 block status's scan over unallocated L2 entries (it skips all-zero entries in one integer loop instead
 * of decoding each): over a sparse image whose tables also hold entries that are not all zero bits but still
 * unallocated (the COPIED bit alone; an all-zero entry next to a zero-flag one), `Image.map` gives the same runs as
 * one status per cluster (which never reaches the skip), and the same as `qemu-img map` when it is installed.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { openImage, createImage } from '@blk/images';
import { afterAll, describe, expect, it } from 'vitest';
import { hasCommand, tempDir } from '../../cli/test/helpers.js';

const CS = 65536;
const SIZE = 768 * CS; // one L2 table (8192 entries) covers it
const QEMU = hasCommand('qemu-img');
const dir = tempDir('qcow2-status-scan');
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

interface Run {
  start: number;
  length: number;
  allocated: boolean;
  zero: boolean;
  data: boolean;
  hostOffset?: number;
}

/** Merges adjacent runs of one kind (host-contiguous where there is a host offset), as `Image.map` does. */
function merge(runs: Run[]): Run[] {
  const out: Run[] = [];
  for (const r of runs) {
    const last = out[out.length - 1];
    if (
      last
      && last.allocated === r.allocated
      && last.zero === r.zero
      && last.data === r.data
      && (last.hostOffset === undefined) === (r.hostOffset === undefined)
      && (last.hostOffset === undefined || last.hostOffset + last.length === r.hostOffset)
    ) {
      last.length += r.length;
    } else {
      out.push({ ...r });
    }
  }
  return out;
}

/** The clusters that `runs` mark as data. */
function dataClusters(runs: Run[]): number[] {
  const out: number[] = [];
  for (const r of runs) if (r.data) for (let c = r.start / CS; c < (r.start + r.length) / CS; c++) out.push(c);
  return out;
}

describe('qcow2 status over sparse L2 tables', () => {
  it('map() equals a status per cluster, with COPIED-only and zero-flag entries among the zero ones', async () => {
    const file = path.join(dir, 'sparse.qcow2');
    await createImage(file, { format: 'qcow2', size: SIZE });
    let image = await openImage(file, { readOnly: false });
    const data = new Uint8Array(CS).fill(0x5a);
    // Clusters spread over the image, some adjacent (one run), the last one at the very end.
    const clusters = [0, 1, 2, 40, 41, 300, 301, 302, 303, 700, 767];
    for (const c of clusters) await image.write(c * CS, data);
    await image.close();
    // Patch unallocated entries: cluster 100 carries the COPIED bit alone (offset 0: still unallocated), cluster
    // 500 the zero flag alone (a v3 zero cluster), amid all-zero entries.
    const buf = fs.readFileSync(file);
    const l1Offset = Number(buf.readBigUInt64BE(40));
    const l2 = Number(buf.readBigUInt64BE(l1Offset) & 0x00fffffffffffe00n);
    expect(l2).toBeGreaterThan(0);
    expect(buf.readBigUInt64BE(l2 + 100 * 8)).toBe(0n);
    buf.writeBigUInt64BE(1n << 63n, l2 + 100 * 8);
    expect(buf.readBigUInt64BE(l2 + 500 * 8)).toBe(0n);
    buf.writeBigUInt64BE(1n, l2 + 500 * 8);
    fs.writeFileSync(file, buf);

    image = await openImage(file, { readOnly: true });
    try {
      const mapped: Run[] = [];
      for await (const r of image.map()) {
        mapped.push({
          start: r.start,
          length: r.length,
          allocated: r.allocated,
          zero: r.zero,
          data: r.data,
          ...(r.hostOffset !== undefined ? { hostOffset: r.hostOffset } : {}),
        });
      }
      const perCluster: Run[] = [];
      for (let off = 0; off < SIZE; off += CS) {
        const st = await image.chainStatus(off, CS);
        perCluster.push({
          start: off,
          length: st.length,
          allocated: st.allocated,
          zero: st.zero,
          data: st.data,
          ...(st.hostOffset !== undefined ? { hostOffset: st.hostOffset } : {}),
        });
      }
      expect(mapped).toEqual(merge(perCluster));
      // The data clusters are exactly those written, and cluster 500 alone is a zero cluster.
      expect(dataClusters(mapped)).toEqual(clusters);
      expect(mapped.filter((r) => r.zero && r.allocated)).toEqual([
        { start: 500 * CS, length: CS, allocated: true, zero: true, data: false },
      ]);
    } finally {
      await image.close();
    }
    if (QEMU) {
      const q = spawnSync('qemu-img', ['map', '--output=json', file], { encoding: 'utf8' });
      expect(q.status).toBe(0);
      const theirs = JSON.parse(q.stdout) as Run[];
      expect(dataClusters(theirs)).toEqual(clusters);
      expect(theirs.filter((e) => e.zero && !e.data && e.start === 500 * CS).map((e) => e.length)).toEqual([CS]);
    }
  });
});
