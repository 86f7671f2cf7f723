/** The cow driver's side of the backing hooks: what it records of the core's facts, how it compares, the commit mark. */
import { describe, expect, it } from 'vitest';
import { MemoryFile, MemoryStorage } from '@blk/core';
import { cowDriver, parseHeader, recordedBackingSize } from '../src/index.js';
import { MiB, createFile, openFile } from './helpers.js';

describe('cow backing hooks', () => {
  it("records a raw regular file's length (UML stats it) and any other backing image's virtual size", () => {
    expect(recordedBackingSize({ size: 5120, format: 'raw', fileSize: 5000, isFile: true })).toBe(5000);
    expect(recordedBackingSize({ size: 5120, format: 'raw', fileSize: 0, isFile: false })).toBe(5120);
    expect(recordedBackingSize({ size: MiB, format: 'cow', fileSize: 4096, isFile: true })).toBe(MiB);
    expect(recordedBackingSize({ fileSize: 4096 })).toBeUndefined();
  });

  it('create records the size and mtime from the facts', async () => {
    const made = new MemoryFile();
    await cowDriver.create!(new MemoryStorage(made, '/new.cow'), {
      size: MiB,
      backing: {
        path: '/b.raw',
        facts: { size: MiB, format: 'raw', fileSize: MiB, mtimeSec: 2 ** 32 + 77, isFile: true },
      },
    });
    const header = new Uint8Array(4128);
    made.readAt(0, header);
    expect(parseHeader(header, 'v3')).toMatchObject({ size: MiB, mtime: 77, backingFile: '/b.raw' });
  });

  it('checkBackingFacts: size is identity, mtime is a modification (compared modulo 2^32); absent facts are skipped', async () => {
    const image = await openFile(await createFile({ size: MiB, backing: { path: '/b', size: MiB, mtimeSec: 1234 } }));
    expect(image.checkBackingFacts({ size: MiB, mtimeSec: 1234 + 2 ** 32 }).every((c) => c.matches)).toBe(true);
    expect(image.checkBackingFacts({ size: 2 * MiB, mtimeSec: 99 })).toEqual([
      { what: 'size', recorded: MiB, found: 2 * MiB, matches: false, unit: 'bytes', kind: 'identity' },
      { what: 'mtime', recorded: 1234, found: 99, matches: false, kind: 'modified' },
    ]);
    expect(image.checkBackingFacts({})).toEqual([]);
    await image.close();
  });

  it("QEMU's variants record no size and check nothing, and have no commit mark", async () => {
    const image = await openFile(
      await createFile({ variant: 'v2-qemu-lp64', size: MiB, backing: { path: '/b', size: 2 * MiB, mtimeSec: 5 } }),
    );
    expect(image.checkBackingFacts({ size: 7, mtimeSec: 8 })).toEqual([]);
    expect(image.commitMarker).toBeUndefined();
    await image.close();
  });

  it('the commit mark: begin() records mtime 0 keeping the path; setBacking with new facts clears it', async () => {
    const file = await createFile({ size: MiB, backing: { path: '/b', size: MiB, mtimeSec: 1234 } });
    const image = await openFile(file);
    expect(image.commitMarker).toMatchObject({ marked: false, description: 'backing mtime 0' });
    await image.commitMarker!.begin();
    expect(image.commitMarker!.marked).toBe(true);
    expect(image.checkBackingFacts({ size: MiB, mtimeSec: 1234 })).toContainEqual(
      expect.objectContaining({ what: 'mtime', matches: false }),
    );
    const reopened = await openFile(file);
    expect(reopened.backing).toEqual({ path: '/b', expect: { size: MiB, mtimeSec: 0 } });
    expect(reopened.commitMarker!.marked).toBe(true);
    await reopened.close();
    await image.setBacking({ path: '/b', facts: { size: MiB, mtimeSec: 4321 } });
    expect(image.commitMarker!.marked).toBe(false);
    expect(image.checkBackingFacts({ size: MiB, mtimeSec: 4321 }).every((c) => c.matches)).toBe(true);
    await image.close();
  });

  it('declares its create and amend options as data', () => {
    expect(cowDriver.createOptions?.map((o) => o.name)).toEqual([
      'size',
      'preallocation',
      'backing_file',
      'backing_fmt',
      'version',
      'variant',
      'alignment',
    ]);
    expect(cowDriver.createOptions?.find((o) => o.name === 'version')).toMatchObject({
      type: 'enum',
      values: ['3', '2', '1'],
      driverOption: 'variant',
      mapsTo: { 3: 'v3', 2: 'v2-qemu-lp64', 1: 'v1' },
    });
    expect(cowDriver.amendOptions?.[0]).toMatchObject({ name: 'size', type: 'size' });
  });
});
