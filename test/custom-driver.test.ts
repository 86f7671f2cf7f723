/**
 * The "bring your own driver" case, end to end: a custom format (tiny,
 * test/fixtures/custom-driver.ts) given to a host next to the built-in
 * formats, created with its declared options, found by probing, opened from
 * the probe bytes, and proven with @blk/testkit.
 */
import { describe, expect, it } from 'vitest';
import { MemoryStorage, MemoryVfs, type Storage, type VfsOpenOptions } from '@blk/core';
import * as images from '@blk/images';
import { builtinDrivers, createHost } from '@blk/images';
import {
  chainSubject,
  checkCapabilities,
  checkChainMap,
  checkConcurrentWrites,
  checkReadAfterWrite,
} from '@blk/testkit';
import { parseOptionValue, renderOptionHelp } from '../packages/cli/src/options.js';
import { TINY_HEADER_SIZE, encodeTinyHeader, tinyDriver } from './fixtures/custom-driver.js';

/** A host that knows the built-in formats and tiny, over `vfs` (as an application builds one). */
function tinyHost(vfs: MemoryVfs = new MemoryVfs()) {
  return { vfs, host: createHost({ drivers: [...builtinDrivers(), tinyDriver], vfs }) };
}

/** A MemoryVfs that counts the reads of each storage it opens. */
class CountingVfs extends MemoryVfs {
  reads = 0;
  override async open(path: string, options?: VfsOpenOptions): Promise<Storage> {
    const storage = (await super.open(path, options)) as MemoryStorage;
    const vfs = this;
    return new (class extends MemoryStorage {
      override read(offset: number, into: Uint8Array): Promise<number> {
        vfs.reads++;
        return super.read(offset, into);
      }
    })(storage.file, storage.path, storage.readOnly);
  }
}

describe('a custom driver (tiny)', () => {
  it('is created by createImage with its header and no data', async () => {
    const { vfs, host } = tinyHost();
    await host.createImage('/disk.tiny', { format: 'tiny', size: 10_000 });
    expect(vfs.file('/disk.tiny').snapshot()).toEqual(encodeTinyHeader(10_000));
  });

  it('is found by probing among the built-in formats: its score beats raw', async () => {
    const { vfs, host } = tinyHost();
    await host.createImage('/disk.img', { format: 'tiny', size: 10_000 });
    const storage = await vfs.open('/disk.img', { readOnly: true });
    const probed = await host.registry.probe(storage);
    await storage.close();
    expect(probed.driver.name).toBe('tiny');
    expect(probed.scores).toEqual([
      { name: 'cow', score: 0 },
      { name: 'qcow2', score: 0 },
      { name: 'raw', score: 1 },
      { name: 'tiny', score: 100 },
    ]);
    const image = await host.openImage('/disk.img');
    expect(image.format).toBe('tiny');
    expect(image.size).toBe(10_000);
    expect(image.capabilities.limits.requestAlignment).toBe(4096);
    await image.close();
  });

  it('opens a probed file from the bytes probing read: no second read of the header', async () => {
    const vfs = new CountingVfs();
    const { host } = tinyHost(vfs);
    await host.createImage('/disk.img', { format: 'tiny', size: 10_000 });
    vfs.reads = 0;
    const probed = await host.openImage('/disk.img', { readOnly: true });
    const afterProbedOpen = vfs.reads;
    await probed.close();
    vfs.reads = 0;
    // Named, nothing is probed: the driver reads its header itself.
    const named = await host.openImage('/disk.img', { readOnly: true, format: 'tiny' });
    const afterNamedOpen = vfs.reads;
    await named.close();
    expect(afterNamedOpen).toBe(1);
    // Probing's one read of the head (the file is shorter than the window: no second read of the tail), none by tiny.
    expect(afterProbedOpen).toBe(1);
  });

  it("is given to @blk/images' createHost without changing the default host", async () => {
    const { vfs, host } = tinyHost(new images.MemoryVfs());
    await host.createImage('/disk.img', { format: 'tiny', size: 8192 });
    const image = await host.openImage('/disk.img');
    expect(image.format).toBe('tiny');
    await image.close();
    // The default host (behind images.openImage) is not changed: it does not know tiny.
    expect(images.defaultHost().registry.get('tiny')).toBeUndefined();
    await expect(images.openImage('/disk.img', { vfs, format: 'tiny' })).rejects.toMatchObject({
      kind: 'unknown-format',
    });
  });

  it('declares its create options as data: -o help renders from them, values parse by type, others are refused', async () => {
    const specs = tinyDriver.createOptions!;
    expect(renderOptionHelp('Supported options:', specs)).toBe(
      [
        'Supported options:',
        '  size=<size>          Virtual disk size',
        '  preallocation=<str>  Preallocation mode (allowed values: off, full)',
        '  label=<str>          A name for the disk (up to 64 bytes of UTF-8)',
        '',
      ].join('\n'),
    );
    const label = parseOptionValue(specs.find((o) => o.name === 'label')!, 'boot disk', 'tiny');
    const { host } = tinyHost();
    await host.createImage('/l.tiny', { format: 'tiny', size: 8192, driverOptions: { label } });
    const image = await host.openImage('/l.tiny');
    expect(image.info().formatSpecific).toMatchObject({ label: 'boot disk' });
    await image.close();
    await expect(
      host.createImage('/x.tiny', { format: 'tiny', size: 8192, driverOptions: { lable: 'typo' } }),
    ).rejects.toMatchObject({ kind: 'invalid-argument', field: 'driverOptions.lable' });
    await expect(
      host.createImage('/y.tiny', { format: 'tiny', size: 8192, preallocation: 'falloc' }),
    ).rejects.toMatchObject({ kind: 'not-supported' });
  });

  it('preallocation full allocates every sector; block status tells data from unallocated zeros', async () => {
    const { host } = tinyHost();
    await host.createImage('/full.tiny', { format: 'tiny', size: 3 * 4096 + 100, preallocation: 'full' });
    await host.createImage('/sparse.tiny', { format: 'tiny', size: 3 * 4096 + 100 });
    const full = await host.openImage('/full.tiny');
    const sparse = await host.openImage('/sparse.tiny');
    expect(await full.status(0, full.size)).toMatchObject({
      allocated: true,
      length: full.size,
      zero: false,
      hostOffset: TINY_HEADER_SIZE,
    });
    expect(await sparse.status(0, sparse.size)).toMatchObject({ allocated: false, length: sparse.size, zero: true });
    await sparse.write(4096, new Uint8Array([7]));
    const runs = [];
    for await (const run of sparse.map())
      runs.push({ start: run.start, length: run.length, depth: run.depth, data: run.data, zero: run.zero });
    expect(runs).toEqual([
      { start: 0, length: 8192, depth: 0, data: true, zero: false },
      { start: 8192, length: sparse.size - 8192, depth: undefined, data: false, zero: true },
    ]);
    await full.close();
    await sparse.close();
  });

  it('refuses to be created on a storage that cannot write, naming the file', async () => {
    const readOnly = new MemoryStorage(new MemoryVfs().put('/ro.tiny', new Uint8Array(0)), '/ro.tiny', true);
    const noWrite = Object.assign(Object.create(readOnly) as Storage, { write: undefined, truncate: undefined });
    await expect(tinyDriver.create!(noWrite, { size: 4096 })).rejects.toMatchObject({
      kind: 'read-only',
      path: '/ro.tiny',
    });
  });

  it('stores an unaligned write at header + offset, read-modify-writing whole 4096-byte sectors', async () => {
    const { vfs, host } = tinyHost();
    await host.createImage('/disk.tiny', { format: 'tiny', size: 3 * 4096 });
    const image = await host.openImage('/disk.tiny', { format: 'tiny' });
    await image.write(4090, new Uint8Array([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]));
    expect(await image.read(4088, 14)).toEqual(new Uint8Array([0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 0, 0]));
    await image.close();
    const file = vfs.file('/disk.tiny');
    // Sectors 0 and 1 were written whole; sector 2 never was.
    expect(file.length).toBe(TINY_HEADER_SIZE + 2 * 4096);
    expect(file.snapshot().subarray(TINY_HEADER_SIZE + 4090, TINY_HEADER_SIZE + 4100)).toEqual(
      new Uint8Array([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]),
    );
  });

  it('gets capabilities derived from what it declares (4096-byte alignment and cluster, FUA by flush, zeroes by the core, no discard)', async () => {
    const { host } = tinyHost();
    await host.createImage('/disk.tiny', { format: 'tiny', size: 3 * 4096 });
    const image = await host.openImage('/disk.tiny', { format: 'tiny' });
    checkCapabilities(image);
    expect(image.capabilities).toMatchObject({
      write: true,
      flush: true,
      fua: 'emulated',
      writeZeroes: 'emulated',
      discard: 'none',
      blockStatus: true,
    });
    expect(image.capabilities.limits).toMatchObject({
      requestAlignment: 4096,
      clusterSize: 4096,
      preferredTransfer: 4096,
    });
    await image.write(100, new Uint8Array([1, 2, 3]), { fua: true });
    await image.writeZeroes(4096, 4096, { mayUnmap: true });
    await expect(image.writeZeroes(0, 4096, { noFallback: true })).rejects.toMatchObject({
      kind: 'not-supported',
      code: 'ENOTSUP',
    });
    await expect(image.discard(0, 4096)).rejects.toMatchObject({ kind: 'not-supported' });
    expect(await image.read(99, 5)).toEqual(new Uint8Array([0, 1, 2, 3, 0]));
    await image.close();
    const readOnly = await host.openImage('/disk.tiny', { readOnly: true });
    checkCapabilities(readOnly);
    expect(readOnly.capabilities).toMatchObject({ write: false, fua: 'none', writeZeroes: 'none', discard: 'none' });
    await readOnly.close();
  });

  it('refuses a file with another version with kind unsupported-version', async () => {
    const { vfs, host } = tinyHost();
    vfs.put('/v2.tiny', encodeTinyHeader(4096, 2));
    await expect(host.openImage('/v2.tiny')).rejects.toMatchObject({ kind: 'unsupported-version', path: '/v2.tiny' });
  });

  it('passes the read-after-write proof', async () => {
    await checkReadAfterWrite(
      chainSubject({
        host: tinyHost().host,
        // Odd size: the last sector is partial; "random" fills it through the driver first.
        layers: [{ format: 'tiny', size: 5 * 4096 + 123 }],
      }),
      { numRuns: 200 },
    );
  });

  it('passes the read-after-write proof starting empty (sparse, unallocated sectors)', async () => {
    await checkReadAfterWrite(
      chainSubject({
        host: tinyHost().host,
        layers: [{ format: 'tiny', size: 9 * 4096 - 1, fill: 'none' }],
      }),
      { numRuns: 200 },
    );
  });

  it('passes the concurrency proof', async () => {
    await checkConcurrentWrites(
      chainSubject({
        host: tinyHost().host,
        layers: [{ format: 'tiny', size: 6 * 4096 + 5, fill: 3 }],
      }),
      { numRuns: 200, alignments: [4096] },
    );
  });

  it('passes the chain-map proof under a cow overlay', async () => {
    await checkChainMap({ host: tinyHost().host, formats: ['tiny', 'cow'], size: 5 * 4096 + 512, numRuns: 50 });
  });
});
