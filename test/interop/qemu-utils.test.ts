/**
 * Interop with qemu-utils (qemu-img, qemu-io) on raw images, and with
 * qemu-img convert for cow inputs via uml_moo (qemu has had no cow driver
 * since 2014, peers.md §5):
 *  - raw images blk writes (library and `blk io`) are what qemu-io / qemu-img read;
 *  - raw images qemu-io writes are what blk reads (library and `blk io`);
 *  - `blk convert -O raw` equals `qemu-img convert -O raw` for the same raw input,
 *    and for a cow input equals qemu-img's conversion of uml_moo's merge;
 *  - `blk map --output=json` agrees with `qemu-img map --output=json` where both can say it;
 *  - `blk info --output=json` is byte-identical to `qemu-img info --output=json` on raw files;
 *  - negative proof: one wrong byte in a blk-written file fails qemu-io's pattern check.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { truncate } from 'node:fs/promises';
import { DriverRegistry, createImage, openImage } from '@blk/core';
import { rawDriver } from '@blk/raw';
import { PEERS, needPeers, run, runOk } from './helpers/peers.js';
import {
  SECTOR,
  applyWrites,
  diff,
  lineImage,
  pokeBytes,
  readBytes,
  tempDir,
  writeBytes,
  type Write,
} from './helpers/files.js';
import { blkCli, blkCliOk, blkReadAll, blkWrite, createOverlay } from './helpers/blk.js';
import { MiB, guestWrites, mooCopy } from './helpers/scenarios.js';

const registry = new DriverRegistry([rawDriver]);

let dir: string;
let cleanup: () => Promise<void>;
let p: (name: string) => string;

beforeAll(async () => {
  ({ dir, cleanup } = await tempDir('qemu'));
  p = (name) => `${dir}/${name}`;
});

afterAll(async () => {
  await cleanup?.();
});

const fill = (byte: number, offset: number, length: number): Write => ({
  offset,
  data: new Uint8Array(length).fill(byte),
});
const hex = (n: number) => `0x${n.toString(16)}`;
/** qemu-io `read -P` commands that verify fill writes. */
const verifyCmds = (writes: Write[]) =>
  writes.flatMap((w) => ['-c', `read -P ${hex(w.data[0]!)} ${w.offset} ${w.data.length}`]);

/** The raw file as qemu reads it (qemu-img convert -f raw -O raw). */
async function qemuRead(file: string, out: string): Promise<Buffer> {
  await runOk('qemu-img', ['convert', '-f', 'raw', '-O', 'raw', file, out]);
  return readBytes(out);
}

async function blkRawWrite(file: string, writes: Write[]): Promise<void> {
  const image = await openImage(file, { registry, format: 'raw' });
  try {
    for (const w of writes) await image.write(w.offset, w.data);
  } finally {
    await image.close();
  }
}

async function blkRawRead(file: string): Promise<Buffer> {
  const image = await openImage(file, { registry, format: 'raw', readOnly: true });
  try {
    return Buffer.from(await image.read(0, image.size));
  } finally {
    await image.close();
  }
}

describe('qemu-utils: raw images written by one side, read by the other', () => {
  const SIZE = 4 * MiB;
  const writes: Write[] = [
    fill(0xab, 0, 65536),
    fill(0xcd, 100_000, 3333), // unaligned both ends
    fill(0x00, MiB, 4096), // zeros over non-zero data
    fill(0x5a, SIZE - SECTOR, SECTOR),
    fill(0x01, 777_777, 1),
  ];

  it('blk (library) writes, qemu-io verifies the patterns and qemu-img reads the exact bytes', async (ctx) => {
    needPeers(ctx, PEERS.qemuIo, PEERS.qemuImg);
    const f = p('blk-lib.raw');
    await createImage(f, { registry, format: 'raw', size: SIZE });
    const start = lineImage(SIZE, 3);
    await blkRawWrite(f, [{ offset: 0, data: start }]);
    await blkRawWrite(f, writes);
    const r = await run('qemu-io', ['-f', 'raw', ...verifyCmds(writes), f]);
    expect(r.stdout + r.stderr).not.toMatch(/Pattern verification failed/);
    expect(r.code).toBe(0);
    expect(
      diff(await qemuRead(f, p('blk-lib.out')), applyWrites(start, writes), 'qemu-img read vs model'),
    ).toBeUndefined();
  });

  it('qemu-io writes, blk (library) reads the same bytes', async (ctx) => {
    needPeers(ctx, PEERS.qemuIo);
    const f = p('qemu-w.raw');
    const start = lineImage(SIZE, 4);
    await writeBytes(f, start);
    const cmds = writes.flatMap((w) => ['-c', `write -P ${hex(w.data[0]!)} ${w.offset} ${w.data.length}`]);
    await runOk('qemu-io', ['-f', 'raw', ...cmds, '-c', `write -z ${2 * MiB + 512} 8192`, f]);
    const expected = applyWrites(start, [...writes, fill(0, 2 * MiB + 512, 8192)]);
    expect(diff(await blkRawRead(f), expected, 'blk read vs qemu-io writes')).toBeUndefined();
  });

  it('blk io writes, qemu-io reads (and the reverse), with the qemu-io command syntax', async (ctx) => {
    needPeers(ctx, PEERS.qemuIo);
    const f = p('blk-io.raw');
    await writeBytes(f, lineImage(SIZE, 5));
    await blkCliOk(['io', '-c', 'write -P 0xab 0 64k', f]);
    await blkCliOk(['io', '-c', 'write -P 0xcd 100000 3333', f]);
    const r = await run('qemu-io', ['-f', 'raw', '-c', 'read -P 0xab 0 64k', '-c', 'read -P 0xcd 100000 3333', f]);
    expect(r.stdout + r.stderr).not.toMatch(/Pattern verification failed/);
    expect(r.code).toBe(0);

    await runOk('qemu-io', ['-f', 'raw', '-c', 'write -P 0x77 200000 5000', f]);
    expect((await blkCli(['io', '-c', 'read -P 0x77 200000 5000', f])).code).toBe(0);
    // And blk io notices a wrong pattern (so the check above can fail).
    expect((await blkCli(['io', '-c', 'read -P 0x78 200000 5000', f])).code).not.toBe(0);
  });

  it("negative proof: one wrong byte in a blk-written raw file fails qemu-io's pattern check", async (ctx) => {
    needPeers(ctx, PEERS.qemuIo);
    const f = p('neg.raw');
    await createImage(f, { registry, format: 'raw', size: SIZE });
    await blkRawWrite(f, [fill(0xab, 0, 65536)]);
    const ok = await run('qemu-io', ['-f', 'raw', '-c', 'read -P 0xab 0 64k', f]);
    expect(ok.code).toBe(0);
    await pokeBytes(f, 40_000, Buffer.of(0xaa));
    const bad = await run('qemu-io', ['-f', 'raw', '-c', 'read -P 0xab 0 64k', f]);
    expect(bad.code).not.toBe(0);
    expect(bad.stdout + bad.stderr).toMatch(/Pattern verification failed/);
  });
});

describe('qemu-utils: blk convert vs qemu-img convert', () => {
  /** A sparse raw input: data islands, an unaligned island, explicit zeros, holes, data at the end. */
  async function sparseInput(f: string, size: number): Promise<Buffer> {
    const content = Buffer.alloc(size);
    await writeBytes(f, Buffer.alloc(0));
    await truncate(f, size);
    const islands: Write[] = [
      { offset: 0, data: lineImage(MiB, 6) },
      { offset: 3 * MiB + 1000, data: lineImage(5000, 7) },
      { offset: 4 * MiB, data: new Uint8Array(65536) }, // written zeros (allocated, reads as zero)
      { offset: size - 1536, data: lineImage(1536, 8) },
    ];
    for (const w of islands) {
      await pokeBytes(f, w.offset, w.data);
      content.set(w.data, w.offset);
    }
    return content;
  }

  it('raw input (sparse, sector-multiple size): identical outputs', async (ctx) => {
    needPeers(ctx, PEERS.qemuImg);
    const size = 6 * MiB + 1536;
    const input = await sparseInput(p('conv-in.raw'), size);
    await blkCliOk(['convert', '-O', 'raw', p('conv-in.raw'), p('conv-blk.raw')]);
    await runOk('qemu-img', ['convert', '-f', 'raw', '-O', 'raw', p('conv-in.raw'), p('conv-qemu.raw')]);
    const mine = await readBytes(p('conv-blk.raw'));
    const theirs = await readBytes(p('conv-qemu.raw'));
    expect(diff(mine, theirs, 'blk convert vs qemu-img convert')).toBeUndefined();
    expect(diff(theirs, input, 'qemu-img convert vs input')).toBeUndefined();
  });

  it("the input's holes stay holes at any -S granule, as with qemu-img: the outputs map alike", async (ctx) => {
    needPeers(ctx, PEERS.qemuImg);
    // One non-zero byte every 16 KiB of a sparse file: 4 KiB blocks of data between holes.
    const f = p('speckled.raw');
    await writeBytes(f, Buffer.alloc(0));
    await truncate(f, 2 * MiB);
    for (let o = 0; o < 2 * MiB; o += 16384) await pokeBytes(f, o, new Uint8Array([0x5a]));
    for (const granule of ['4k', '64k']) {
      await blkCliOk(['convert', '-S', granule, '-O', 'raw', f, p(`speck-blk-${granule}.raw`)]);
      await runOk('qemu-img', ['convert', '-S', granule, '-f', 'raw', '-O', 'raw', f, p(`speck-qemu-${granule}.raw`)]);
      const mapOf = async (out: string) => (await runOk('qemu-img', ['map', '--output=json', '-f', 'raw', out])).stdout;
      expect(await mapOf(p(`speck-blk-${granule}.raw`))).toBe(await mapOf(p(`speck-qemu-${granule}.raw`)));
      expect(diff(await readBytes(p(`speck-blk-${granule}.raw`)), await readBytes(f))).toBeUndefined();
    }
  });

  it('raw input of 1000000 bytes (not a sector multiple): both pad to whole sectors, byte-identical outputs', async (ctx) => {
    needPeers(ctx, PEERS.qemuImg);
    const input = lineImage(1_000_000, 9);
    await writeBytes(p('odd-in.raw'), input);
    await blkCliOk(['convert', '-O', 'raw', p('odd-in.raw'), p('odd-blk.raw')]);
    await runOk('qemu-img', ['convert', '-f', 'raw', '-O', 'raw', p('odd-in.raw'), p('odd-qemu.raw')]);
    const mine = await readBytes(p('odd-blk.raw'));
    const theirs = await readBytes(p('odd-qemu.raw'));
    // qemu-img's raw driver rounds the virtual size up to 512 (1000448) and pads with zeros.
    expect(theirs.length).toBe(1_000_448);
    expect(diff(theirs.subarray(0, 1_000_000), input, 'qemu-img convert vs input')).toBeUndefined();
    expect(theirs.subarray(1_000_000).every((b) => b === 0)).toBe(true);
    // blk counts a raw disk in whole sectors too (1000000 bytes are a 1000448-byte disk): same output.
    expect(diff(mine, theirs, 'blk convert vs qemu-img convert')).toBeUndefined();
  });

  it("cow input: blk convert equals qemu-img convert of uml_moo's merge", async (ctx) => {
    needPeers(ctx, PEERS.qemuImg, PEERS.umlMoo);
    const size = 8 * MiB;
    const base = lineImage(size, 10);
    await writeBytes(p('cbase.img'), base);
    const writes = guestWrites(size, 500);
    await createOverlay(p('conv.cow'), p('cbase.img'), 'v3');
    await blkWrite(p('conv.cow'), writes, { format: 'cow' });
    await blkCliOk(['convert', '-O', 'raw', p('conv.cow'), p('conv-cow-blk.raw')]);
    await mooCopy(p('conv.cow'), p('conv-merged.img'));
    await runOk('qemu-img', ['convert', '-f', 'raw', '-O', 'raw', p('conv-merged.img'), p('conv-cow-qemu.raw')]);
    const mine = await readBytes(p('conv-cow-blk.raw'));
    const theirs = await readBytes(p('conv-cow-qemu.raw'));
    expect(diff(mine, theirs, 'blk convert of cow vs qemu-img convert of uml_moo merge')).toBeUndefined();
    expect(diff(mine, applyWrites(base, writes), 'blk convert of cow vs model')).toBeUndefined();
    expect(diff(await blkReadAll(p('conv.cow')), mine)).toBeUndefined();
  });
});

interface Extent {
  start: number;
  length: number;
  data: boolean;
  zero: boolean;
  depth?: number;
}

function parseMap(json: string): Extent[] {
  const raw = JSON.parse(json) as unknown;
  const list = Array.isArray(raw) ? raw : (raw as { extents?: unknown[] }).extents;
  if (!Array.isArray(list)) throw new Error(`unexpected map output: ${json.slice(0, 300)}`);
  return list.map((e) => {
    const x = e as Record<string, unknown>;
    return {
      start: Number(x.start),
      length: Number(x.length),
      data: x.data === true,
      zero: x.zero === true,
      depth: x.depth as number,
    };
  });
}

/** The extents tile [0, end) without gaps or overlaps. */
function tiles(extents: Extent[], end: number): boolean {
  let pos = 0;
  for (const e of extents) {
    if (e.start !== pos || !(e.length > 0)) return false;
    pos += e.length;
  }
  return pos === end;
}

describe('qemu-utils: blk map vs qemu-img map on raw files', () => {
  /*
   * Both sides ask the file system (SEEK_DATA/SEEK_HOLE; blk through
   * @blk/native): holes are zero:true/data:false, everything stored is
   * data:true (even written zeros). So the JSON must be identical, and both
   * must agree with the content: covering the whole guest content; every
   * range with non-zero bytes is data (not zero); every range called zero
   * really reads as zeros.
   */
  async function bothMaps(f: string): Promise<{ mine: Extent[]; theirs: Extent[] }> {
    const mine = parseMap((await blkCliOk(['map', '--output=json', f])).stdout);
    const theirs = parseMap((await runOk('qemu-img', ['map', '--output=json', '-f', 'raw', f])).stdout);
    return { mine, theirs };
  }

  function checkTruth(extents: Extent[], content: Uint8Array, who: string): void {
    for (const e of extents) {
      const bytes = content.subarray(e.start, Math.min(e.start + e.length, content.length));
      const allZero = bytes.every((b) => b === 0);
      if (e.zero) expect(allZero, `${who} says [${e.start}, +${e.length}) is zero but it is not`).toBe(true);
      if (!allZero)
        expect(e.data && !e.zero, `${who} says [${e.start}, +${e.length}) with data is not data`).toBe(true);
    }
  }

  it('a fully written raw file: one data extent covering it on both sides (identical JSON)', async (ctx) => {
    needPeers(ctx, PEERS.qemuImg);
    const size = 2 * MiB;
    const content = lineImage(size, 11);
    await writeBytes(p('map-full.raw'), content);
    const { mine, theirs } = await bothMaps(p('map-full.raw'));
    const mineText = (await blkCliOk(['map', '--output=json', p('map-full.raw')])).stdout;
    const theirText = (await runOk('qemu-img', ['map', '--output=json', '-f', 'raw', p('map-full.raw')])).stdout;
    expect(mineText).toBe(theirText);
    expect(theirs).toHaveLength(1);
    expect(theirs[0]).toMatchObject({ start: 0, length: size, data: true, zero: false });
    expect(mine).toHaveLength(1);
    expect(mine[0]).toMatchObject({ start: 0, length: size, data: true, zero: false });
  });

  it('a sparse raw file: identical JSON (holes as zero runs), and neither contradicts the content', async (ctx) => {
    needPeers(ctx, PEERS.qemuImg);
    const size = 4 * MiB;
    const f = p('map-sparse.raw');
    await writeBytes(f, Buffer.alloc(0));
    await truncate(f, size);
    const content = Buffer.alloc(size);
    for (const [off, len] of [
      [0, 65536],
      [MiB, 4096],
      [3 * MiB + 512, 512],
    ] as const) {
      const d = lineImage(len, 12);
      await pokeBytes(f, off, d);
      content.set(d, off);
    }
    const { mine, theirs } = await bothMaps(f);
    expect(tiles(theirs, size)).toBe(true);
    expect(tiles(mine, size)).toBe(true);
    checkTruth(theirs, content, 'qemu-img map');
    checkTruth(mine, content, 'blk map');
    expect(theirs.some((e) => e.zero && !e.data)).toBe(true); // the file system here does report holes
    const mineText = (await blkCliOk(['map', '--output=json', f])).stdout;
    const theirText = (await runOk('qemu-img', ['map', '--output=json', '-f', 'raw', f])).stdout;
    expect(mineText).toBe(theirText);
    // The human format lists the data runs only: the same lines (qemu-img prints the name as given).
    const mineHuman = (await blkCliOk(['map', f])).stdout;
    const theirHuman = (await runOk('qemu-img', ['map', '-f', 'raw', f])).stdout;
    expect(mineHuman).toBe(theirHuman);
  });

  it('compare -s: a hole and written zeros read the same but differ in block status, for both tools', async (ctx) => {
    needPeers(ctx, PEERS.qemuImg);
    const holes = p('cmp-holes.raw');
    await writeBytes(holes, Buffer.alloc(0));
    await truncate(holes, MiB);
    await writeBytes(p('cmp-zeros.raw'), Buffer.alloc(MiB));
    for (const args of [
      ['-s', holes, p('cmp-zeros.raw')],
      [holes, p('cmp-zeros.raw')],
      ['-s', holes, holes],
    ]) {
      const mine = await blkCli(['compare', ...args]);
      const theirs = await run('qemu-img', ['compare', '-f', 'raw', '-F', 'raw', ...args]);
      expect({ code: mine.code, stdout: mine.stdout }, `blk compare ${args.join(' ')}`).toEqual({
        code: theirs.code,
        stdout: theirs.stdout,
      });
    }
    expect((await blkCli(['compare', '-s', holes, p('cmp-zeros.raw')])).stdout).toMatch(/block status mismatch/);
  });

  it('the odd-sized file: both map the size rounded up to 512 (identical JSON)', async (ctx) => {
    needPeers(ctx, PEERS.qemuImg);
    const content = lineImage(1_000_000, 13);
    await writeBytes(p('map-odd.raw'), content);
    const { mine, theirs } = await bothMaps(p('map-odd.raw'));
    expect(tiles(theirs, 1_000_448)).toBe(true);
    expect(theirs[0]).toMatchObject({ start: 0, length: 1_000_000, data: true });
    expect(mine).toEqual(theirs);
    checkTruth(mine, content, 'blk map');
  });
});

describe('qemu-utils: blk info --output=json vs qemu-img info --output=json on raw files', () => {
  // blk's info JSON follows qemu-img's (same keys, same QDict order, same
  // pretty-printing); for a raw file whose size is a sector multiple both
  // describe the same file, so the outputs must be identical.
  for (const [name, sparse] of [
    ['fully written', false],
    ['sparse', true],
  ] as const) {
    it(`${name} raw file: identical output`, async (ctx) => {
      needPeers(ctx, PEERS.qemuImg);
      const f = p(`info-${name.replace(' ', '-')}.raw`);
      if (sparse) {
        await writeBytes(f, Buffer.alloc(0));
        await truncate(f, 3 * MiB);
        await pokeBytes(f, MiB, lineImage(8192, 14));
      } else {
        await writeBytes(f, lineImage(MiB + 512, 15));
      }
      const mine = (await blkCliOk(['info', '--output=json', f])).stdout;
      const theirs = (await runOk('qemu-img', ['info', '--output=json', '-f', 'raw', f])).stdout;
      expect(JSON.parse(mine)).toMatchObject({ format: 'raw', 'virtual-size': sparse ? 3 * MiB : MiB + 512 });
      expect(mine).toBe(theirs);
    });
  }
});
