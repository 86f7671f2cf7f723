import { describe, expect, it } from 'vitest';
import {
  BlockError,
  DriverRegistry,
  MAX_PROBE_BYTES,
  MemoryFile,
  MemoryStorage,
  MemoryVfs,
  openImage,
  type BlockDriver,
  type ProbeHint,
} from '@blk/core';
import { rawDriver } from '@blk/raw';
import { CountingStorage, CountingVfs, flatDriver } from './fixtures/helpers.js';
import { makeOverlayFile, overlayDriver } from './fixtures/overlay-driver.js';

/** A driver that only scores (opening it is not needed here); records what probe saw. */
function scorer(
  name: string,
  score: number | (() => number),
  probeBytes = 16,
  seen: Array<{ head: Uint8Array; hint: ProbeHint }> = [],
): BlockDriver {
  return {
    name,
    probeBytes,
    probe(head, hint) {
      seen.push({ head: head.slice(), hint });
      return typeof score === 'function' ? score() : score;
    },
    open: () => Promise.reject(new Error('not used')),
  };
}

const head = new Uint8Array(512).fill(7);
const hint = { size: 512 };

describe('DriverRegistry probing', () => {
  it('picks the highest score, wherever the driver was registered', () => {
    const registry = new DriverRegistry([scorer('a', 10), scorer('b', 50), scorer('c', 30)]);
    const result = registry.probeHead(head, hint);
    expect(result?.driver.name).toBe('b');
    expect(result?.score).toBe(50);
    expect(result?.scores).toEqual([
      { name: 'a', score: 10 },
      { name: 'b', score: 50 },
      { name: 'c', score: 30 },
    ]);
  });

  it('gives a tie to the driver registered first (documented tie-break, as QEMU keeps the first maximum)', () => {
    expect(new DriverRegistry([scorer('first', 60), scorer('second', 60)]).probeHead(head, hint)?.driver.name).toBe(
      'first',
    );
    expect(new DriverRegistry([scorer('second', 60), scorer('first', 60)]).probeHead(head, hint)?.driver.name).toBe(
      'second',
    );
  });

  it('counts a probe that throws as 0 and still asks the drivers after it', () => {
    const after: Array<{ head: Uint8Array; hint: ProbeHint }> = [];
    const registry = new DriverRegistry([
      scorer('thrower', () => {
        throw new Error('bug in probe');
      }),
      scorer('fallback', 1, 16, after),
    ]);
    const result = registry.probeHead(head, hint);
    expect(result?.driver.name).toBe('fallback');
    expect(result?.scores[0]).toEqual({ name: 'thrower', score: 0 });
    expect(after).toHaveLength(1);
  });

  it('clamps scores to 0..100 and treats NaN as 0', () => {
    const registry = new DriverRegistry([
      scorer('nan', Number.NaN),
      scorer('neg', -5),
      scorer('huge', 1000),
      scorer('max', 100),
    ]);
    const result = registry.probeHead(head, hint);
    expect(result?.scores).toEqual([
      { name: 'nan', score: 0 },
      { name: 'neg', score: 0 },
      { name: 'huge', score: 100 },
      { name: 'max', score: 100 },
    ]);
    // 1000 was clamped to 100 and registered first, so it wins the tie.
    expect(result?.driver.name).toBe('huge');
  });

  it('returns undefined from probeHead when no driver scores above 0', () => {
    expect(new DriverRegistry([scorer('no', 0)]).probeHead(head, hint)).toBeUndefined();
  });

  it("refuses a file nobody recognises with 'unknown-format' naming the drivers tried", async () => {
    const registry = new DriverRegistry([scorer('alpha', 0), scorer('beta', 0)]);
    const err = await registry.probe(new MemoryStorage(new MemoryFile(head), '/x.img')).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BlockError);
    expect(err).toMatchObject({ kind: 'unknown-format', path: '/x.img' });
    expect((err as Error).message).toContain('alpha, beta');
  });

  it('reads the head once, as many bytes as the hungriest driver wants, and the last 512 bytes once', async () => {
    const storage = new CountingStorage(new MemoryStorage(new MemoryFile(new Uint8Array(10_000).fill(1))));
    const registry = new DriverRegistry([scorer('a', 1, 100), scorer('b', 2, 4096), scorer('c', 3, 512)]);
    await registry.probe(storage);
    expect(storage.reads).toBe(2);
    expect(storage.ops).toEqual(['read 0+4096', 'read 9488+512']);
  });

  it('reads at least the 2048 bytes the foreign-format signatures need, and no tail when the head reaches the end', async () => {
    const storage = new CountingStorage(new MemoryStorage(new MemoryFile(new Uint8Array(2000).fill(1))));
    await new DriverRegistry([scorer('a', 1, 16)]).probe(storage);
    expect(storage.ops).toEqual(['read 0+2000']);
  });

  it('caps the probe read at 64 KiB even when a driver asks for more', async () => {
    const storage = new CountingStorage(new MemoryStorage(new MemoryFile(new Uint8Array(200_000))));
    const seen: Array<{ head: Uint8Array; hint: ProbeHint }> = [];
    await new DriverRegistry([scorer('greedy', 5, 1 << 20, seen)]).probe(storage);
    expect(storage.ops).toEqual([`read 0+${MAX_PROBE_BYTES}`, `read ${200_000 - 512}+512`]);
    expect(seen[0]!.head.length).toBe(MAX_PROBE_BYTES);
  });

  it('hands each driver at most its probeBytes, fewer when the file is shorter, plus the file name and size', async () => {
    const a: Array<{ head: Uint8Array; hint: ProbeHint }> = [];
    const b: Array<{ head: Uint8Array; hint: ProbeHint }> = [];
    const registry = new DriverRegistry([scorer('a', 1, 8, a), scorer('b', 1, 4096, b)]);
    await registry.probe(new MemoryStorage(new MemoryFile(new Uint8Array(100).fill(3)), '/short.img'), 'short.img');
    expect(a[0]!.head.length).toBe(8);
    expect(b[0]!.head.length).toBe(100);
    expect(b[0]!.hint).toMatchObject({ fileName: 'short.img', size: 100 });
    // The whole (short) file is its own tail.
    expect(b[0]!.hint.tail).toEqual(new Uint8Array(100).fill(3));
  });
});

describe('DriverRegistry registration', () => {
  it('refuses a second driver with a taken name', () => {
    const registry = new DriverRegistry([scorer('dup', 1)]);
    expect(() => registry.register(scorer('dup', 2))).toThrow(expect.objectContaining({ kind: 'invalid-argument' }));
    expect(registry.names()).toEqual(['dup']);
    expect(registry.probeHead(head, hint)?.score).toBe(1);
  });

  it('replaces a driver in place when asked to, keeping its tie-break position', () => {
    const registry = new DriverRegistry([scorer('x', 50), scorer('y', 50)]);
    registry.register(scorer('x', 50), { replace: true });
    expect(registry.names()).toEqual(['x', 'y']);
    expect(registry.probeHead(head, hint)?.driver.name).toBe('x');
  });

  it('forgets an unregistered driver', () => {
    const registry = new DriverRegistry([scorer('gone', 90), scorer('stays', 10)]);
    expect(registry.unregister('gone')).toBe(true);
    expect(registry.unregister('gone')).toBe(false);
    expect(registry.probeHead(head, hint)?.driver.name).toBe('stays');
  });

  it("answers require() for an unknown name with 'unknown-format' listing the known ones", () => {
    const registry = new DriverRegistry([rawDriver]);
    expect(() => registry.require('qcow9', '/a.img')).toThrow(
      expect.objectContaining({
        kind: 'unknown-format',
        path: '/a.img',
        message: expect.stringContaining('known: raw'),
      }),
    );
  });
});

describe('openImage with a named format', () => {
  it('skips probing: no probe is called and the named driver opens the file', async () => {
    const seen: Array<{ head: Uint8Array; hint: ProbeHint }> = [];
    const vfs = new MemoryVfs();
    vfs.put('/disk.img', new Uint8Array(4096));
    const registry = new DriverRegistry([scorer('eager', 100, 16, seen), rawDriver, flatDriver(512)]);
    const image = await openImage('/disk.img', { registry, vfs, format: 'flat512' });
    expect(image.format).toBe('flat512');
    expect(seen).toHaveLength(0);
    await image.close();
  });

  it('reads the probe window once when openImage probes, before the driver reads its header', async () => {
    const vfs = new CountingVfs();
    vfs.put('/top.ovl', makeOverlayFile({ size: 4096 }));
    const registry = new DriverRegistry([overlayDriver, rawDriver, scorer('wide', 0, 4096)]);
    const image = await openImage('/top.ovl', { registry, vfs, readOnly: true });
    expect(image.format).toBe('ovl');
    const ops = vfs.storages.get('/top.ovl')!.ops;
    const window = registry.probeWindow();
    expect(ops[0]).toBe(`read 0+${window}`);
    expect(ops.filter((op) => op === `read 0+${window}`)).toHaveLength(1);
    await image.close();
  });

  it('opens with the winner when probing', async () => {
    const vfs = new MemoryVfs();
    vfs.put('/disk.img', new Uint8Array(4096));
    const image = await openImage('/disk.img', { registry: new DriverRegistry([rawDriver, flatDriver(512)]), vfs });
    // flat scores 0, raw scores 1.
    expect(image.format).toBe('raw');
    await image.close();
  });
});
