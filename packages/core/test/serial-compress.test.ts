/**
 * Two general capabilities qcow2 asked of the core: `limits.serialAlignment` (writes are serialised
 * in whole units of it, so a driver never sees two writes into one allocation unit at once) and
 * `WriteFlags.compress` with `capabilities.compress` (compressed writes of whole clusters), plus the
 * `below` argument a driver's `write` is handed.
 */
import { describe, expect, it } from 'vitest';
import {
  DriverRegistry,
  MemoryVfs,
  openImage,
  type BlockDriver,
  type DriverCapabilities,
  type DriverImage,
  type ReadBelow,
  type WriteFlags,
} from '@blk/core';
import { flagDriver, type FlagCall } from './fixtures/flag-driver.js';

/** A driver whose writes wait until the test releases them, recording how many run at once. */
function gatedDriver(capabilities: DriverCapabilities) {
  const state = { running: 0, maxRunning: 0, release: [] as Array<() => void>, belows: [] as unknown[] };
  const driver: BlockDriver = {
    name: 'gated',
    probeBytes: 0,
    probe: () => 0,
    async open(storage) {
      const size = await storage.size();
      const image: DriverImage = {
        driver,
        requestAlignment: 512,
        size,
        capabilities,
        read: (_offset, into) => {
          into.fill(0);
        },
        write: async (_offset: number, _data: Uint8Array, _flags?: WriteFlags, below?: ReadBelow) => {
          state.belows.push(below);
          state.running++;
          state.maxRunning = Math.max(state.maxRunning, state.running);
          await new Promise<void>((resolve) => state.release.push(resolve));
          state.running--;
        },
        blockStatus: async (_o, length) => ({ allocated: true, length }),
        flush: async () => {},
        close: () => storage.close(),
        info: () => ({}),
      };
      return image;
    },
  };
  return { driver, state };
}

async function openWith(driver: BlockDriver, readOnly = false) {
  const vfs = new MemoryVfs();
  vfs.put('/g.img', new Uint8Array(65536));
  return openImage('/g.img', { registry: new DriverRegistry([driver]), vfs, format: driver.name, readOnly });
}

/** Lets queued microtasks and timers run. */
const settle = () => new Promise((resolve) => setTimeout(resolve, 5));

describe('limits.serialAlignment', () => {
  it('serialises two writes into one declared unit, not writes into different units', async () => {
    const { driver, state } = gatedDriver({ limits: { clusterSize: 4096, serialAlignment: 4096 } });
    const image = await openWith(driver);
    expect(image.capabilities.limits.serialAlignment).toBe(4096);
    const a = image.write(0, new Uint8Array(512));
    const b = image.write(512, new Uint8Array(512)); // same 4 KiB unit: waits for a
    const c = image.write(8192, new Uint8Array(512)); // another unit: runs alongside a
    await settle();
    expect(state.running).toBe(2);
    state.release.shift()!();
    state.release.shift()!();
    await settle();
    expect(state.running).toBe(1); // b, once a is done
    state.release.shift()!();
    await Promise.all([a, b, c]);
    expect(state.maxRunning).toBe(2);
    // The driver was handed a `below` to read the layer under it.
    expect(state.belows.every((f) => typeof f === 'function')).toBe(true);
    await image.close();
  });

  it('without it, writes into one unit but different sectors reach the driver together', async () => {
    const { driver, state } = gatedDriver({ limits: { clusterSize: 4096 } });
    const image = await openWith(driver);
    expect(image.capabilities.limits.serialAlignment).toBeUndefined();
    const writes = [image.write(0, new Uint8Array(512)), image.write(512, new Uint8Array(512))];
    await settle();
    expect(state.running).toBe(2);
    for (const r of state.release.splice(0)) r();
    await Promise.all(writes);
    await image.close();
  });
});

describe('compressed writes', () => {
  it('are passed to a driver that declares compress, on whole clusters only', async () => {
    const calls: FlagCall[] = [];
    const image = await openWith(
      flagDriver({ capabilities: { compress: true, limits: { clusterSize: 4096 } } }, calls),
    );
    expect(image.capabilities.compress).toBe(true);
    await image.write(4096, new Uint8Array(8192).fill(1), { compress: true });
    expect(calls).toEqual([
      { op: 'write', offset: 4096, length: 8192, data: expect.any(Uint8Array), flags: { compress: true } },
    ]);
    await expect(image.write(512, new Uint8Array(4096), { compress: true })).rejects.toMatchObject({
      kind: 'invalid-argument',
      code: 'EINVAL',
    });
    await expect(image.write(4096, new Uint8Array(1000), { compress: true })).rejects.toMatchObject({
      kind: 'invalid-argument',
    });
    // The last cluster may end at the image's end.
    await image.write(65536 - 4096, new Uint8Array(4096), { compress: true });
    await image.close();
  });

  it('are refused where the driver cannot compress, and absent from a read-only open', async () => {
    const plain = await openWith(flagDriver({ capabilities: { limits: { clusterSize: 4096 } } }));
    expect(plain.capabilities.compress).toBeUndefined();
    await expect(plain.write(0, new Uint8Array(4096), { compress: true })).rejects.toMatchObject({
      kind: 'not-supported',
      code: 'ENOTSUP',
    });
    await plain.close();
    const ro = await openWith(flagDriver({ capabilities: { compress: true } }), true);
    expect(ro.capabilities.compress).toBeUndefined();
    await ro.close();
  });
});
