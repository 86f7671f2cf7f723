/**
 * qemu-io's `info` prints the format's allocation unit as "cluster size"
 * (QEMU's bdrv_get_info), which is `capabilities.limits.clusterSize`: not
 * the request alignment (the old `sectorSize`), and 0 where the format has none.
 */
import { describe, expect, it } from 'vitest';
import {
  DriverRegistry,
  MemoryVfs,
  openImage,
  type BlockDriver,
  type DriverCapabilities,
  type DriverImage,
  type Storage,
} from '@blk/core';
import { info } from '../src/io/status-commands.js';
import type { IoSession } from '../src/io/session.js';

/** A read-only format of zeros whose request alignment and cluster size are what the test says. */
function unitDriver(requestAlignment: number, clusterSize: number | undefined): BlockDriver {
  const driver: BlockDriver = {
    name: 'units',
    probeBytes: 0,
    probe: () => 0,
    async open(storage: Storage): Promise<DriverImage> {
      const capabilities: DriverCapabilities = { write: false, ...(clusterSize ? { limits: { clusterSize } } : {}) };
      return {
        driver,
        requestAlignment,
        capabilities,
        size: 1 << 20,
        read: (_offset, into) => {
          into.fill(0);
        },
        blockStatus: async (_offset, length) => ({ allocated: false, length }),
        flush: async () => undefined,
        info: () => ({}),
        close: () => storage.close(),
      };
    },
  };
  return driver;
}

async function infoLines(requestAlignment: number, clusterSize: number | undefined): Promise<string[]> {
  const vfs = new MemoryVfs();
  vfs.put('/disk.img', new Uint8Array(0));
  const image = await openImage('/disk.img', {
    format: 'units',
    readOnly: true,
    vfs,
    registry: new DriverRegistry([unitDriver(requestAlignment, clusterSize)]),
  });
  let text = '';
  const ctx = {
    image,
    out: (t: string) => {
      text += t;
    },
  } as unknown as IoSession;
  try {
    expect(await info.run(ctx, ['info'])).toBe(true);
  } finally {
    await image.close();
  }
  return text.split('\n');
}

describe('qemu-io info: cluster size', () => {
  it('is the declared cluster size, not the request alignment', async () => {
    expect(await infoLines(512, 65536)).toContain('cluster size: 64 KiB');
  });

  it('is 0 for a format without one, whatever its request alignment', async () => {
    expect(await infoLines(4096, undefined)).toContain('cluster size: 0 bytes');
  });
});
