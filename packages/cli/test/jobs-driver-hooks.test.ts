/**
 * commit and rebase know no format: they go through the driver's backing
 * hooks. Here a driver that records its backing file's length (never an
 * mtime) and marks a commit its own way works with both jobs.
 */
import { describe, expect, it } from 'vitest';
import {
  BlockError,
  MemoryVfs,
  openImage,
  type BackingCheck,
  type BackingFacts,
  type BackingReference,
  type BackingSpec,
  type BlockDriver,
  type BlockStatus,
  type CommitMarker,
  type DriverImage,
  type ReadBelow,
  type Storage,
} from '@blk/core';
import { registry } from '../src/images.js';
import { commitImage } from '../src/jobs/commit.js';
import { rebaseImage } from '../src/jobs/rebase.js';

const SS = 512;
const DATA = 4096;
const encoder = new TextEncoder();
const decoder = new TextDecoder();

interface LenHeader {
  size: number;
  backing?: { path: string; length: number };
  /** The commit mark: the generation is negative while a commit runs. */
  generation: number;
  sectors: number[];
}

/** Calls of the hooks, across every image of the format, in order. */
const calls: string[] = [];

async function writeHeader(storage: Storage, h: LenHeader): Promise<void> {
  const bytes = new Uint8Array(DATA);
  const text = encoder.encode(`LENG${JSON.stringify(h)}`);
  if (text.length > DATA) throw new BlockError('not-supported', 'header full');
  bytes.set(text);
  await storage.write!(0, bytes);
}

const lenDriver: BlockDriver = {
  name: 'lenovl',
  probeBytes: 4,
  probe: (head) => (decoder.decode(head.subarray(0, 4)) === 'LENG' ? 100 : 0),
  async create(storage, options) {
    const h: LenHeader = { size: options.size, generation: 1, sectors: [] };
    if (options.backing) h.backing = { path: options.backing.path, length: options.backing.facts?.fileSize ?? -1 };
    await writeHeader(storage, h);
  },
  async open(storage) {
    const bytes = new Uint8Array(DATA);
    await storage.read(0, bytes);
    if (decoder.decode(bytes.subarray(0, 4)) !== 'LENG')
      throw new BlockError('bad-magic', 'not lenovl', { path: storage.path });
    const end = bytes.indexOf(0, 4);
    return new LenImage(storage, JSON.parse(decoder.decode(bytes.subarray(4, end))) as LenHeader);
  },
};

class LenImage implements DriverImage {
  readonly driver = lenDriver;
  readonly sectorSize = SS;

  constructor(
    private readonly storage: Storage,
    private h: LenHeader,
  ) {}

  get size(): number {
    return this.h.size;
  }

  get backing(): BackingReference | undefined {
    return this.h.backing ? { path: this.h.backing.path } : undefined;
  }

  checkBackingFacts(facts: BackingFacts): BackingCheck[] {
    const b = this.h.backing;
    if (!b || facts.fileSize === undefined) return [];
    const checks: BackingCheck[] = [
      {
        what: 'length',
        recorded: b.length,
        found: facts.fileSize,
        matches: b.length === facts.fileSize,
        unit: 'bytes',
        kind: 'identity',
      },
    ];
    // The mark makes the overlay refuse to open normally while its backing file changes.
    if (this.h.generation < 0)
      checks.push({ what: 'generation', recorded: this.h.generation, found: 'any', matches: false, kind: 'modified' });
    return checks;
  }

  get commitMarker(): CommitMarker | undefined {
    if (!this.h.backing) return undefined;
    return {
      marked: this.h.generation < 0,
      description: 'a negative generation',
      begin: async () => {
        calls.push('begin');
        this.h = { ...this.h, generation: -Math.abs(this.h.generation) };
        await writeHeader(this.storage, this.h);
      },
    };
  }

  async setBacking(spec: BackingSpec | undefined): Promise<void> {
    calls.push(`setBacking ${spec?.path ?? '-'} ${spec?.facts?.fileSize ?? '-'}`);
    const h: LenHeader = { ...this.h, generation: Math.abs(this.h.generation) + 1 };
    if (spec) h.backing = { path: spec.path, length: spec.facts?.fileSize ?? -1 };
    else delete h.backing;
    await writeHeader(this.storage, h);
    this.h = h;
  }

  private has(sector: number): boolean {
    return this.h.sectors.includes(sector);
  }

  async read(offset: number, into: Uint8Array, below: ReadBelow): Promise<void> {
    for (let pos = 0; pos < into.length; pos += SS) {
      const part = into.subarray(pos, pos + SS);
      if (this.has((offset + pos) / SS)) {
        part.fill(0);
        await this.storage.read(DATA + offset + pos, part);
      } else {
        await below(offset + pos, part);
      }
    }
  }

  async write(offset: number, data: Uint8Array): Promise<void> {
    await this.storage.write!(DATA + offset, data);
    const sectors = new Set(this.h.sectors);
    for (let s = offset / SS; s < (offset + data.length) / SS; s++) sectors.add(s);
    this.h = { ...this.h, sectors: [...sectors].sort((a, b) => a - b) };
    await writeHeader(this.storage, this.h);
  }

  async discard(offset: number, length: number): Promise<void> {
    const end = (offset + length) / SS;
    this.h = { ...this.h, sectors: this.h.sectors.filter((s) => s < offset / SS || s >= end) };
    await writeHeader(this.storage, this.h);
  }

  async blockStatus(offset: number, length: number): Promise<BlockStatus> {
    const first = this.has(offset / SS);
    let n = SS;
    while (n < length && this.has((offset + n) / SS) === first) n += SS;
    return { allocated: first, length: Math.min(n, length) };
  }

  async flush(): Promise<void> {
    await this.storage.flush?.();
  }

  async close(): Promise<void> {
    await this.storage.close();
  }

  info(): Record<string, unknown> {
    return { generation: this.h.generation, length: this.h.backing?.length };
  }
}

registry.register(lenDriver);

async function setup(): Promise<MemoryVfs> {
  const vfs = new MemoryVfs('/d');
  vfs.put('/d/base.raw', new Uint8Array(64 * 1024));
  const top = await vfs.open('/d/top.len', { create: true });
  await lenDriver.create!(top, { size: 64 * 1024, backing: { path: '/d/base.raw', facts: { fileSize: 64 * 1024 } } });
  await top.close();
  const image = await openImage('/d/top.len', { registry, vfs });
  await image.write(4096, new Uint8Array(1024).fill(0xab));
  await image.close();
  return vfs;
}

describe('jobs over a driver that records no mtime', () => {
  it('commit marks the overlay through the driver, copies, records the new facts (clearing the mark) and empties it', async () => {
    const vfs = await setup();
    // An mtime change means nothing to this format: the commit is not refused for it.
    vfs.file('/d/base.raw').mtimeSec += 1000;
    calls.length = 0;
    const result = await commitImage('/d/top.len', { vfs });
    expect(result).toMatchObject({ copied: 1024, emptied: true, warnings: [] });
    expect(calls).toEqual(['begin', `setBacking /d/base.raw ${64 * 1024}`]);
    expect(vfs.file('/d/base.raw').snapshot().subarray(4096, 5120)).toEqual(new Uint8Array(1024).fill(0xab));
    const image = await openImage('/d/top.len', { registry, vfs });
    expect(image.info().formatSpecific).toMatchObject({ generation: 2 });
    expect(await image.read(4096, 4)).toEqual(new Uint8Array(4).fill(0xab));
    await image.close();
    // The journal has done its job.
    expect(await vfs.exists('/d/top.len.blk-commit')).toBe(false);
  });

  it('a backing file the driver says is another file is refused, in its words, with --force too', async () => {
    const vfs = await setup();
    vfs.file('/d/base.raw').truncate(32 * 1024);
    const before = vfs.file('/d/top.len').snapshot();
    await expect(commitImage('/d/top.len', { vfs, force: true })).rejects.toThrow(
      `backing file /d/base.raw is ${32 * 1024} bytes, but the overlay records ${64 * 1024}`,
    );
    expect(vfs.file('/d/top.len').snapshot()).toEqual(before);
  });

  it("a mark without blk's journal is refused in the words the driver gives the mark", async () => {
    const vfs = await setup();
    const image = await openImage('/d/top.len', { registry, vfs, backing: { mode: 'ignore' } });
    await image.markCommitInProgress();
    await image.close();
    await expect(commitImage('/d/top.len', { vfs })).rejects.toThrow(
      /records a negative generation, the mark of an interrupted commit, but no commit journal/,
    );
  });

  it("rebase hands the driver the new backing file's facts", async () => {
    const vfs = await setup();
    vfs.put('/d/new.raw', new Uint8Array(48 * 1024));
    calls.length = 0;
    const result = await rebaseImage('/d/top.len', { vfs, backing: 'new.raw' });
    expect(result.backingPath).toBe('/d/new.raw');
    expect(calls).toEqual([`setBacking /d/new.raw ${48 * 1024}`]);
    const image = await openImage('/d/top.len', { registry, vfs });
    expect(image.info().formatSpecific).toMatchObject({ length: 48 * 1024 });
    // Safe mode kept what the old chain read where the overlay did not hold it (here: zeros, same as new).
    expect(await image.read(4096, 4)).toEqual(new Uint8Array(4).fill(0xab));
    await image.close();
  });
});
