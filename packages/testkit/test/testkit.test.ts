import fc from 'fast-check';
import { afterEach, describe, expect, it } from 'vitest';
import { DriverRegistry, MemoryFile, MemoryStorage, MemoryVfs, createHost, openImage } from '@blk/core';
import { rawDriver } from '@blk/raw';
import {
  ScheduledStorage,
  chainSubject,
  checkChainMap,
  checkReadAfterWrite,
  drive,
  envRuns,
  pattern,
  type TestSubject,
} from '@blk/testkit';
import { overlayDriver } from '../../core/test/fixtures/overlay-driver.js';

const registry = new DriverRegistry([overlayDriver, rawDriver]);

describe('ScheduledStorage', () => {
  it('lets two writes issued in order land in either order, as the scheduler picks', async () => {
    const outcomes = new Set<number>();
    await fc.assert(
      fc.asyncProperty(fc.scheduler(), async (s) => {
        const file = new MemoryFile(new Uint8Array(1));
        const storage = new ScheduledStorage(new MemoryStorage(file), s);
        const both = Promise.all([storage.write(0, new Uint8Array([1])), storage.write(0, new Uint8Array([2]))]);
        await drive(s, both, 'two writes');
        outcomes.add(file.snapshot()[0]!);
      }),
      { numRuns: 100 },
    );
    expect([...outcomes].sort()).toEqual([1, 2]);
  });

  it('takes effect only when the scheduler releases the operation', async () => {
    await fc.assert(
      fc.asyncProperty(fc.scheduler(), async (s) => {
        const file = new MemoryFile(new Uint8Array(1));
        const write = new ScheduledStorage(new MemoryStorage(file), s).write(0, new Uint8Array([9]));
        await Promise.resolve();
        expect(file.snapshot()[0]).toBe(0);
        await drive(s, write, 'write');
        expect(file.snapshot()[0]).toBe(9);
      }),
      { numRuns: 5 },
    );
  });

  it('copies written data at issue: changing the buffer afterwards changes nothing', async () => {
    await fc.assert(
      fc.asyncProperty(fc.scheduler(), async (s) => {
        const file = new MemoryFile(new Uint8Array(1));
        const data = new Uint8Array([5]);
        const write = new ScheduledStorage(new MemoryStorage(file), s).write(0, data);
        data[0] = 6;
        await drive(s, write, 'write');
        expect(file.snapshot()[0]).toBe(5);
      }),
      { numRuns: 5 },
    );
  });
});

describe('drive', () => {
  it('fails as a deadlock when a task waits with nothing scheduled', async () => {
    await fc.assert(
      fc.asyncProperty(fc.scheduler(), async (s) => {
        await expect(drive(s, new Promise(() => undefined), 'stuck')).rejects.toThrow(/stuck: deadlock/);
      }),
      { numRuns: 1 },
    );
  });
});

describe('run counts', () => {
  const saved = process.env.BLK_PROPERTY_RUNS;
  afterEach(() => {
    if (saved === undefined) delete process.env.BLK_PROPERTY_RUNS;
    else process.env.BLK_PROPERTY_RUNS = saved;
  });

  function counting(): { subject: TestSubject; setups: () => number } {
    const inner = chainSubject({ registry, layers: [{ format: 'raw', size: 1024 }] });
    let n = 0;
    return {
      subject: {
        name: 'counted',
        size: inner.size,
        setup: (ctx) => {
          n++;
          return inner.setup(ctx);
        },
      },
      setups: () => n,
    };
  }

  it('runs numRuns sequences, each on a fresh setup', async () => {
    delete process.env.BLK_PROPERTY_RUNS;
    const { subject, setups } = counting();
    await checkReadAfterWrite(subject, { numRuns: 7 });
    expect(setups()).toBe(7);
  });

  it('lets BLK_PROPERTY_RUNS override numRuns', async () => {
    process.env.BLK_PROPERTY_RUNS = '3';
    expect(envRuns()).toBe(3);
    const { subject, setups } = counting();
    await checkReadAfterWrite(subject, { numRuns: 50 });
    expect(setups()).toBe(3);
  });

  it('refuses a BLK_PROPERTY_RUNS that is not a positive integer', () => {
    process.env.BLK_PROPERTY_RUNS = 'lots';
    expect(() => envRuns()).toThrow(/BLK_PROPERTY_RUNS/);
  });
});

describe('chainSubject', () => {
  it('computes the initial content independently, and it matches what the chain reads', async () => {
    const subject = chainSubject({
      registry,
      layers: [{ format: 'raw', size: 5000 }, { format: 'ovl', size: 8192, fill: 3 }, { format: 'ovl' }],
    });
    expect(subject.size).toBe(8192);
    expect(subject.name).toBe('ovl>ovl>raw');
    const vfs = new MemoryVfs();
    const instance = await subject.setup({ vfs, seed: 42 });
    // Past the 5000-byte base only the middle layer's extents can hold data.
    const image = await instance.open({ vfs, readOnly: true });
    expect(image.chain().map((i) => i.format)).toEqual(['ovl', 'ovl', 'raw']);
    expect(await image.read(0, 8192)).toEqual(instance.initial);
    await image.close();
  });

  it('derives every byte from the run seed: same seed, same content; other seed, other content', async () => {
    const subject = chainSubject({ registry, layers: [{ format: 'raw', size: 4096 }] });
    const a = await subject.setup({ vfs: new MemoryVfs(), seed: 1 });
    const b = await subject.setup({ vfs: new MemoryVfs(), seed: 1 });
    const c = await subject.setup({ vfs: new MemoryVfs(), seed: 2 });
    expect(a.initial).toEqual(b.initial);
    expect(a.initial).not.toEqual(c.initial);
  });

  it('refuses a base layer without a size', () => {
    expect(() => chainSubject({ registry, layers: [{ format: 'raw' }] })).toThrow(/base layer needs a size/);
  });

  it('opens the top through the vfs it is given', async () => {
    const subject = chainSubject({ registry, layers: [{ format: 'raw', size: 512 }] });
    const vfs = new MemoryVfs();
    const instance = await subject.setup({ vfs, seed: 3 });
    const other = new MemoryVfs();
    other.put('/images/layer0.raw', pattern(512, 99));
    const image = await openImage('/images/layer0.raw', { registry, vfs: other, format: 'raw' });
    const viaInstance = await instance.open({ vfs: other, readOnly: true });
    expect(await viaInstance.read(0, 512)).toEqual(await image.read(0, 512));
  });
});

describe('where the proofs find formats', () => {
  it('a host (createHost) or a registry, exactly one of them', async () => {
    const host = createHost({ drivers: [overlayDriver, rawDriver], vfs: new MemoryVfs() });
    await checkReadAfterWrite(chainSubject({ host, layers: [{ format: 'raw', size: 8192 }, { format: 'ovl' }] }), {
      numRuns: 5,
    });
    const layers = [{ format: 'raw', size: 8192 }];
    expect(() => chainSubject({ layers })).toThrow(/either host or registry/);
    expect(() => chainSubject({ host, registry, layers })).toThrow(/either host or registry/);
    await expect(checkChainMap({ formats: ['raw', 'ovl'] })).rejects.toThrow(/either host or registry/);
  });
});
