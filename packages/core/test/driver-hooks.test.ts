/**
 * The backing-file hooks of the driver contract: the core gathers facts and
 * applies the backing policy; what an image records and how it compares is
 * the driver's (here a driver that records something else than UML's size
 * and mtime); a driver opens a second file (an external data file) through
 * the same policy as backing files.
 */
import { describe, expect, it } from 'vitest';
import {
  BlockError,
  DriverRegistry,
  MemoryVfs,
  createImage,
  gatherBackingFacts,
  openImage,
  optionSynopsis,
  type BackingCheck,
  type BackingFacts,
  type BackingReference,
  type BackingSpec,
  type BlockDriver,
  type BlockStatus,
  type DriverImage,
  type ReadBelow,
  type Storage,
} from '@blk/core';
import { rawDriver } from '@blk/raw';

const encoder = new TextEncoder();
const decoder = new TextDecoder();
const HEADER = 512;

async function readHeader(storage: Storage, magic: string): Promise<Record<string, unknown>> {
  const bytes = new Uint8Array(HEADER);
  await storage.read(0, bytes);
  if (decoder.decode(bytes.subarray(0, 4)) !== magic)
    throw new BlockError('bad-magic', `not ${magic}`, { path: storage.path });
  const end = bytes.indexOf(0, 4);
  return JSON.parse(decoder.decode(bytes.subarray(4, end < 0 ? HEADER : end))) as Record<string, unknown>;
}

async function writeHeader(storage: Storage, magic: string, fields: Record<string, unknown>): Promise<void> {
  const bytes = new Uint8Array(HEADER);
  bytes.set(encoder.encode(magic + JSON.stringify(fields)));
  await storage.write!(0, bytes);
}

/**
 * "len": an overlay that holds no data and records only its backing file's
 * length in bytes (`fileSize`), never its mtime. Every read falls through.
 */
const lengthDriver: BlockDriver = {
  name: 'len',
  probeBytes: 4,
  probe: (head) => (decoder.decode(head.subarray(0, 4)) === 'LEN1' ? 100 : 0),
  async create(storage, options) {
    const fields: Record<string, unknown> = { size: options.size };
    if (options.backing) fields.backing = { path: options.backing.path, length: options.backing.facts?.fileSize ?? -1 };
    await writeHeader(storage, 'LEN1', fields);
  },
  async open(storage) {
    const fields = await readHeader(storage, 'LEN1');
    return new LengthImage(
      storage,
      fields.size as number,
      fields.backing as { path: string; length: number } | undefined,
    );
  },
};

class LengthImage implements DriverImage {
  readonly driver = lengthDriver;
  readonly sectorSize = 1;
  /** Every spec setBacking was given, to show what the core handed over. */
  readonly specs: Array<BackingSpec | undefined> = [];

  constructor(
    private readonly storage: Storage,
    readonly size: number,
    private record: { path: string; length: number } | undefined,
  ) {}

  get backing(): BackingReference | undefined {
    return this.record ? { path: this.record.path } : undefined;
  }

  checkBackingFacts(facts: BackingFacts): BackingCheck[] {
    if (!this.record || facts.fileSize === undefined) return [];
    return [
      {
        what: 'length',
        recorded: this.record.length,
        found: facts.fileSize,
        matches: facts.fileSize === this.record.length,
        unit: 'bytes',
        kind: 'identity',
      },
    ];
  }

  async setBacking(spec: BackingSpec | undefined): Promise<void> {
    this.specs.push(spec);
    this.record = spec ? { path: spec.path, length: spec.facts?.fileSize ?? -1 } : undefined;
    await writeHeader(this.storage, 'LEN1', { size: this.size, backing: this.record });
  }

  /** Bytes written since open, kept in memory only: this test format records nothing but its header. */
  private readonly written = new Map<number, number>();

  async write(offset: number, data: Uint8Array): Promise<void> {
    data.forEach((byte, i) => {
      this.written.set(offset + i, byte);
    });
  }

  async read(offset: number, into: Uint8Array, below: ReadBelow): Promise<void> {
    await below(offset, into);
    for (let i = 0; i < into.length; i++) {
      const byte = this.written.get(offset + i);
      if (byte !== undefined) into[i] = byte;
    }
  }

  async blockStatus(offset: number, length: number): Promise<BlockStatus> {
    const held = this.written.has(offset);
    let n = 1;
    while (n < length && this.written.has(offset + n) === held) n++;
    return { allocated: held, length: n };
  }

  async flush(): Promise<void> {}

  async close(): Promise<void> {
    await this.storage.close();
  }

  info(): Record<string, unknown> {
    return { length: this.record?.length };
  }
}

describe('backing hooks: the driver decides what it records and how it compares', () => {
  const registry = new DriverRegistry([lengthDriver, rawDriver]);

  async function made(): Promise<MemoryVfs> {
    const vfs = new MemoryVfs('/v');
    vfs.put('/v/base.raw', new Uint8Array(3000).fill(7));
    await createImage('/v/top.len', { registry, vfs, format: 'len', backing: 'base.raw' });
    return vfs;
  }

  it('createImage hands the driver the facts; the driver records what it wants (here the file length)', async () => {
    const vfs = await made();
    const image = await openImage('/v/top.len', { registry, vfs });
    expect(image.info().formatSpecific).toMatchObject({ length: 3000 });
    // 3000 bytes of raw read as a disk of whole sectors: the facts carry both sizes.
    expect(await gatherBackingFacts(vfs, '/v/base.raw', image.backing!)).toEqual({
      size: 3072,
      format: 'raw',
      fileSize: 3000,
      mtimeSec: vfs.file('/v/base.raw').mtimeSec,
      isFile: true,
    });
    await image.close();
  });

  it('a changed mtime alone is no mismatch for a driver that does not record one (the core never compares mtimes)', async () => {
    const vfs = await made();
    vfs.file('/v/base.raw').mtimeSec += 1000;
    const image = await openImage('/v/top.len', { registry, vfs });
    expect(await image.read(0, 4)).toEqual(new Uint8Array(4).fill(7));
    await image.close();
  });

  it("a mismatch the driver reports is refused by default with 'backing-mismatch', in the driver's words", async () => {
    const vfs = await made();
    vfs.file('/v/base.raw').truncate(4000);
    const err = await openImage('/v/top.len', { registry, vfs }).catch((e: unknown) => e);
    expect(err).toMatchObject({ kind: 'backing-mismatch', path: '/v/top.len' });
    expect((err as BlockError).message).toContain('length 4000 differs from 3000 recorded in the overlay');
  });

  it("onMismatch 'accept' opens; 'update' hands setBacking the new facts (the driver records them)", async () => {
    const vfs = await made();
    vfs.file('/v/base.raw').truncate(4000);
    await (await openImage('/v/top.len', { registry, vfs, backing: { onMismatch: 'accept' } })).close();
    const image = await openImage('/v/top.len', { registry, vfs, backing: { onMismatch: 'update' } });
    expect(image.info().formatSpecific).toMatchObject({ length: 4000 });
    await image.close();
    await (await openImage('/v/top.len', { registry, vfs })).close();
  });

  it("Image.checkBackingFacts answers with the driver's checks; setBackingReference takes facts, not UML fields", async () => {
    const vfs = await made();
    const image = await openImage('/v/top.len', { registry, vfs, backing: { mode: 'ignore' } });
    expect(image.checkBackingFacts({ fileSize: 3000 })).toEqual([
      expect.objectContaining({ what: 'length', matches: true }),
    ]);
    expect(image.checkBackingFacts({ fileSize: 1 })).toEqual([expect.objectContaining({ matches: false, found: 1 })]);
    expect(image.commitMark).toBeUndefined();
    await expect(image.markCommitInProgress()).rejects.toMatchObject({ kind: 'not-supported' });
    await expect(
      image.setBackingReference({ path: '/v/base.raw', size: 1, mtimeSec: 2 } as unknown as BackingSpec),
    ).rejects.toMatchObject({ kind: 'invalid-argument' });
    await image.setBackingReference({ path: '/v/base.raw', facts: { fileSize: 5 } });
    expect(image.info().formatSpecific).toMatchObject({ length: 5 });
    await image.close();
  });
});

/** The data file the last "dat" image opened. */
let lastDataFile: Storage | undefined;

/**
 * "dat": an image whose data lives in a second file it names (qcow2's
 * external data file), opened through `DriverOpenOptions.openFile`.
 */
const dataFileDriver: BlockDriver = {
  name: 'dat',
  probeBytes: 4,
  probe: (head) => (decoder.decode(head.subarray(0, 4)) === 'DAT1' ? 100 : 0),
  async open(storage, options) {
    const fields = await readHeader(storage, 'DAT1');
    if (!options.openFile)
      throw new BlockError('not-supported', 'no way to open the data file', { path: storage.path });
    const data = await options.openFile(fields.dataFile as string, { role: 'data-file' });
    lastDataFile = data;
    return new DataFileImage(storage, data, fields.size as number);
  },
};

class DataFileImage implements DriverImage {
  readonly driver = dataFileDriver;
  readonly sectorSize = 1;

  constructor(
    private readonly storage: Storage,
    readonly data: Storage,
    readonly size: number,
  ) {}

  async read(offset: number, into: Uint8Array): Promise<void> {
    into.fill(0);
    await this.data.read(offset, into);
  }

  async write(offset: number, bytes: Uint8Array): Promise<void> {
    await this.data.write!(offset, bytes);
  }

  async blockStatus(_offset: number, length: number): Promise<BlockStatus> {
    return { allocated: true, length };
  }

  async flush(): Promise<void> {}

  async close(): Promise<void> {
    await this.data.close();
    await this.storage.close();
  }

  info(): Record<string, unknown> {
    return { dataFile: this.data.path };
  }
}

describe('DriverOpenOptions.openFile: a second file under the backing policy', () => {
  const registry = new DriverRegistry([dataFileDriver, rawDriver]);

  async function put(vfs: MemoryVfs, image: string, dataFile: string): Promise<void> {
    const header = new Uint8Array(HEADER);
    header.set(encoder.encode(`DAT1${JSON.stringify({ size: 16, dataFile })}`));
    vfs.put(image, header);
  }

  it("opens a relative name against the image's directory (not the working directory), and reads through it", async () => {
    const vfs = new MemoryVfs('/elsewhere');
    vfs.put('/vm/disk.data', new Uint8Array(16).fill(9));
    vfs.put('/elsewhere/disk.data', new Uint8Array(16).fill(1));
    await put(vfs, '/vm/disk.dat', 'disk.data');
    const image = await openImage('/vm/disk.dat', { registry, vfs });
    expect(image.info().formatSpecific).toMatchObject({ dataFile: '/vm/disk.data' });
    expect(await image.read(0, 4)).toEqual(new Uint8Array(4).fill(9));
    await image.write(0, new Uint8Array([5]));
    expect(vfs.file('/vm/disk.data').snapshot()[0]).toBe(5);
    await image.close();
  });

  it('a read-only image opens its data file read-only', async () => {
    const vfs = new MemoryVfs('/');
    vfs.put('/vm/disk.data', new Uint8Array(16));
    await put(vfs, '/vm/disk.dat', '/vm/disk.data');
    const image = await openImage('/vm/disk.dat', { registry, vfs, readOnly: true });
    expect((image.info().formatSpecific as { dataFile: string }).dataFile).toBe('/vm/disk.data');
    const data = lastDataFile!;
    await expect(Promise.resolve().then(() => data.write!(0, new Uint8Array([1])))).rejects.toThrow();
    expect(vfs.file('/vm/disk.data').snapshot()[0]).toBe(0);
    await image.close();
  });

  it("is refused by allowedDirs confinement with 'backing-forbidden'", async () => {
    const vfs = new MemoryVfs('/');
    vfs.put('/secret/key.data', new Uint8Array(16));
    await put(vfs, '/vm/disk.dat', '../secret/key.data');
    await expect(openImage('/vm/disk.dat', { registry, vfs, backing: { allowedDirs: ['/vm'] } })).rejects.toMatchObject(
      { kind: 'backing-forbidden', path: '/vm/disk.dat' },
    );
  });

  it("is refused under mode 'forbid', and by the approve rule", async () => {
    const vfs = new MemoryVfs('/');
    vfs.put('/vm/disk.data', new Uint8Array(16));
    await put(vfs, '/vm/disk.dat', 'disk.data');
    const err = await openImage('/vm/disk.dat', { registry, vfs, backing: { mode: 'forbid' } }).catch(
      (e: unknown) => e,
    );
    expect(err).toMatchObject({ kind: 'backing-forbidden', path: '/vm/disk.dat' });
    expect((err as BlockError).message).toContain("data-file 'disk.data'");
    await expect(
      openImage('/vm/disk.dat', { registry, vfs, backing: { approve: () => 'not yours' } }),
    ).rejects.toMatchObject({ kind: 'backing-forbidden' });
    // Nothing is left open by a refusal: the image opens normally afterwards.
    await (await openImage('/vm/disk.dat', { registry, vfs })).close();
  });

  it("a missing data file is 'backing-missing'", async () => {
    const vfs = new MemoryVfs('/');
    await put(vfs, '/vm/disk.dat', 'gone.data');
    await expect(openImage('/vm/disk.dat', { registry, vfs })).rejects.toMatchObject({ kind: 'backing-missing' });
  });
});

describe('OptionSpec', () => {
  it('renders each option as -o help lists it', () => {
    expect(optionSynopsis({ name: 'size', type: 'size', help: '' })).toBe('size=<size>');
    expect(optionSynopsis({ name: 'version', type: 'enum', values: ['3', '2', '1'], help: '' })).toBe(
      'version=<3|2|1>',
    );
    expect(optionSynopsis({ name: 'lazy', type: 'bool', help: '' })).toBe('lazy=<on|off>');
    expect(optionSynopsis({ name: 'backing_file', type: 'string', valueName: 'file', help: '' })).toBe(
      'backing_file=<file>',
    );
  });
});
