/**
 * NodeFileStorage's flush makes durable what was changed through it: a storage
 * nothing was written to since the last flush skips fdatasync (an image opened
 * writable and closed unchanged costs no disk flush), and a change that
 * completes while a flush runs is flushed by the next one. fdatasync is counted
 * through a wrapped node:fs.
 */
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeEach, describe, expect, it, vi } from 'vitest';

const syncs = vi.hoisted(() => ({ count: 0 }));
vi.mock('node:fs', async (importOriginal) => {
  const fs = await importOriginal<typeof import('node:fs')>();
  const wrapped = {
    ...fs,
    fdatasyncSync: (fd: number) => {
      syncs.count++;
      return fs.fdatasyncSync(fd);
    },
    fdatasync: (fd: number, cb: (err: NodeJS.ErrnoException | null) => void) => {
      syncs.count++;
      return fs.fdatasync(fd, cb);
    },
  };
  return { ...wrapped, default: wrapped };
});

const fs = await import('node:fs');
const { NodeFileStorage, NodeVfs, openImage, createImage, DriverRegistry } = await import('@blk/core');
const { rawDriver } = await import('@blk/raw');

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'blk-flush-'));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));
beforeEach(() => {
  syncs.count = 0;
});

describe.each(['sync', 'async'] as const)('NodeFileStorage (io: %s): flush of a clean storage', (io) => {
  it('skips fdatasync when nothing was written since the last flush; syncs after a write, a truncate', async () => {
    const file = path.join(dir, `clean-${io}.img`);
    fs.writeFileSync(file, new Uint8Array(4096));
    const s = await NodeFileStorage.open(file, { io });
    await s.flush();
    await s.flushOnPool();
    expect(syncs.count).toBe(0);
    await s.write(0, new Uint8Array([1]));
    await s.flush();
    expect(syncs.count).toBe(1);
    await s.flush();
    expect(syncs.count).toBe(1);
    await s.truncate(8192);
    await s.flushOnPool();
    expect(syncs.count).toBe(2);
    await s.writeOnPool(0, new Uint8Array([2]));
    await s.flush();
    expect(syncs.count).toBe(3);
    await s.close();
  });

  it('a write that completes while a flush runs is flushed by the next flush', async () => {
    const file = path.join(dir, `race-${io}.img`);
    fs.writeFileSync(file, new Uint8Array(4096));
    const s = await NodeFileStorage.open(file, { io });
    await s.write(0, new Uint8Array([1]));
    const flushing = s.flushOnPool();
    const writing = s.writeOnPool(512, new Uint8Array([2])); // on the pool: completes after the flush started
    await Promise.all([flushing, writing]);
    const before = syncs.count;
    await s.flush();
    expect(syncs.count).toBe(before + 1);
    await s.close();
  });
});

describe('an image opened writable and closed without a write', () => {
  it('costs no fdatasync (a written one does)', async () => {
    const registry = new DriverRegistry([rawDriver]);
    const vfs = new NodeVfs();
    const file = path.join(dir, 'img.raw');
    await createImage(file, { registry, vfs, format: 'raw', size: 1 << 20 });
    syncs.count = 0;
    const img = await openImage(file, { registry, vfs, format: 'raw' });
    await img.read(0, 4096);
    await img.close();
    expect(syncs.count).toBe(0);
    const again = await openImage(file, { registry, vfs, format: 'raw' });
    await again.write(0, new Uint8Array(512).fill(3));
    await again.close();
    expect(syncs.count).toBeGreaterThanOrEqual(1);
  });
});
