import { describe, it } from 'vitest';
import { DriverRegistry } from '@blk/core';
import { rawDriver } from '@blk/raw';
import { chainSubject, checkReadAfterWrite } from '@blk/testkit';

// raw is byte-granular: no read-modify-write in the core, every byte is
// allocated data. Its size is whole 512-byte sectors (as QEMU counts it). The
// proof still covers unaligned ranges, the last bytes of the image, flush and
// close/reopen.
const registry = new DriverRegistry([rawDriver]);

describe('raw images through the testkit', () => {
  it('reads back every write (an odd number of sectors, random base content)', async () => {
    await checkReadAfterWrite(chainSubject({ registry, layers: [{ format: 'raw', size: 197 * 512 }] }), {
      numRuns: 200,
    });
  });

  it('reads back every write on an image that starts all zeros', async () => {
    await checkReadAfterWrite(chainSubject({ registry, layers: [{ format: 'raw', size: 8192, fill: 'none' }] }), {
      numRuns: 200,
    });
  });
});
