/**
 * Concurrent requests, issued without awaiting each other, over storage whose
 * every operation completes when fast-check's scheduler says (ScheduledVfs):
 * writes from one request land before, between or after those of another, and
 * a driver's metadata updates race for real. Reads must see the content as of
 * their issue, and after close and reopen nothing may be lost.
 */
import { describe, it } from 'vitest';
import { DriverRegistry, builtinDrivers } from '@blk/images';
import { chainSubject, checkConcurrentWrites } from '@blk/testkit';

/** The built-in formats (cow, raw), as @blk/images' default host has them. */
const registry = new DriverRegistry(builtinDrivers());

describe('concurrent requests', () => {
  it('raw', async () => {
    await checkConcurrentWrites(chainSubject({ registry, layers: [{ format: 'raw', size: 64 * 1024 + 512 }] }), {
      numRuns: 200,
    });
  });

  it('cow v3 over raw (bitmap bytes shared by neighbouring sectors)', async () => {
    await checkConcurrentWrites(
      chainSubject({ registry, layers: [{ format: 'raw', size: 64 * 1024 }, { format: 'cow' }] }),
      { numRuns: 200, alignments: [512, 4096] },
    );
  });

  it('cow v3 over raw, writethrough cache', async () => {
    await checkConcurrentWrites(
      chainSubject({
        registry,
        layers: [{ format: 'raw', size: 32 * 1024 }, { format: 'cow' }],
        openOptions: { cache: 'writethrough' },
      }),
      { numRuns: 200, alignments: [512, 4096] },
    );
  });

  it('cow v2-qemu-lp64 over raw (bitmap right after an unaligned header)', async () => {
    await checkConcurrentWrites(
      chainSubject({
        registry,
        layers: [
          { format: 'raw', size: 32 * 1024 },
          { format: 'cow', driverOptions: { variant: 'v2-qemu-lp64' } },
        ],
      }),
      { numRuns: 200, alignments: [512, 4096] },
    );
  });

  it('cow over cow over raw (reads falling through a layer whose I/O is also reordered)', async () => {
    await checkConcurrentWrites(
      chainSubject({
        registry,
        layers: [{ format: 'raw', size: 48 * 1024 }, { format: 'cow', fill: 4 }, { format: 'cow' }],
      }),
      { numRuns: 200, alignments: [512, 4096] },
    );
  });
});
