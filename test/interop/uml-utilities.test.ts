/**
 * Interop with uml-utilities (uml_mkcow / uml_moo), the user-space copy of
 * UML's COW code:
 *  - overlays made by uml_mkcow open in blk with every header field read right;
 *  - blk's empty v3 overlay is byte-identical to uml_mkcow's;
 *  - overlays blk made and wrote (v3, v2-uml, v1) merge with uml_moo, copying
 *    and in place, into exactly the bytes blk reads through the chain;
 *  - blk writing into a uml_mkcow overlay (format named, format probed, and via
 *    `blk io`), and blk reading a uml_mkcow overlay whose bitmap and data were
 *    laid out by the spec (also re-laid out as the pre-2006 "broken v3"
 *    header), agree with uml_moo;
 *  - `blk commit` gives the same backing file as `uml_moo -d`;
 *  - negative proofs: a corrupted data byte, a flipped bitmap bit order and a
 *    wrong mtime in a blk-made overlay are all caught by these comparisons.
 *
 * The v2-qemu-* variants are not covered here: no installed peer reads them
 * (QEMU deleted its cow driver in 2014; UML and uml_moo read version 2 as the
 * incompatible v2-uml layout, cow-format.md §11).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stat } from 'node:fs/promises';
import { PEERS, needPeers, peerVersions, runOk, run } from './helpers/peers.js';
import {
  SECTOR,
  applyWrites,
  cpP,
  diff,
  differingOffsets,
  lineImage,
  mtimeSec,
  peekBytes,
  pokeBytes,
  readBytes,
  tempDir,
  touchedSectors,
  writeBytes,
  type Write,
} from './helpers/files.js';
import {
  blkAllocatedSectors,
  blkCliOk,
  blkInfo,
  blkReadAll,
  blkWrite,
  createOverlay,
  type CowVariant,
} from './helpers/blk.js';
import { cowGeometry, parseCowHeader, sectorBit, sectorDataOffset, type UmlVariant } from './helpers/cowfile.js';
import { MiB, guestWrites, mooCopy, mooInPlace } from './helpers/scenarios.js';

const SIZE = 8 * MiB;
/** A size that is a whole number of sectors but not of pages (v3 only; v1/v2 have the bitmap rounding bug). */
const ODD_SIZE = 8 * MiB + 3 * SECTOR;

let dir: string;
let cleanup: () => Promise<void>;
let p: (name: string) => string;
let base: Buffer;
let oddBase: Buffer;

beforeAll(async () => {
  console.log(`[interop] peers: ${peerVersions().join('; ')}`);
  ({ dir, cleanup } = await tempDir('umlutil'));
  p = (name) => `${dir}/${name}`;
  base = lineImage(SIZE, 1);
  oddBase = lineImage(ODD_SIZE, 2);
  await writeBytes(p('base.img'), base);
  await writeBytes(p('odd.img'), oddBase);
});

afterAll(async () => {
  await cleanup?.();
});

/** blk creates a `variant` overlay over `backing`, writes `writes`, and returns the expected disk. */
async function blkOverlay(
  cow: string,
  backing: string,
  backingBytes: Buffer,
  variant: CowVariant,
  writes: Write[],
): Promise<Buffer> {
  await createOverlay(cow, backing, variant);
  await blkWrite(cow, writes, { format: 'cow' });
  return applyWrites(backingBytes, writes);
}

describe('uml-utilities: uml_mkcow overlays in blk', () => {
  it('opens a uml_mkcow overlay and reads every header field right', async (ctx) => {
    needPeers(ctx, PEERS.umlMkcow);
    await runOk('uml_mkcow', [p('mk.cow'), p('base.img')]);
    const info = await blkInfo(p('mk.cow'));
    const mtime = await mtimeSec(p('base.img'));
    expect(info.format).toBe('cow');
    expect(info.size).toBe(SIZE);
    expect(info.backing?.stored).toBe(p('base.img'));
    expect(info.backing?.opened).toBe(true);
    const fs = info.formatSpecific;
    expect(fs).toMatchObject({
      variant: 'v3',
      version: 3,
      backingFile: p('base.img'),
      backingMtime: mtime,
      backingSize: SIZE,
    });
    // Geometry as uml_mkcow lays it out (cow-format.md §3.3, §5).
    const g = cowGeometry('v3', SIZE);
    expect(fs).toMatchObject({
      sectorSize: SECTOR,
      alignment: 4096,
      cowFormat: 0,
      bitmapOffset: g.bitmapOffset,
      bitmapLength: g.bitmapLen,
      dataOffset: g.dataOffset,
    });
    // An empty overlay reads as its backing file.
    expect(diff(await blkReadAll(p('mk.cow')), base, 'blk read of empty uml_mkcow overlay')).toBeUndefined();
    expect((await blkAllocatedSectors(p('mk.cow'))).size).toBe(0);
  });

  it('reads a uml_mkcow overlay whose bitmap and data follow the spec exactly as uml_moo merges it', async (ctx) => {
    needPeers(ctx, PEERS.umlMkcow, PEERS.umlMoo);
    await runOk('uml_mkcow', [p('hand.cow'), p('odd.img')]);
    const g = cowGeometry('v3', ODD_SIZE);
    const sectors = [0, 3, 8, 9, 10, 11, 12, 13, 14, 15, 4097, ODD_SIZE / SECTOR - 1];
    const expected = Buffer.from(oddBase);
    const filler = Buffer.alloc(SECTOR);
    for (const s of sectors) {
      filler.fill(0);
      filler.write(`hand-made sector ${s}`);
      await pokeBytes(p('hand.cow'), sectorDataOffset(g, s), filler);
      filler.copy(expected, s * SECTOR);
      const bit = sectorBit(g, s);
      const cur = (await peekBytes(p('hand.cow'), bit.offset, 1))[0]!;
      await pokeBytes(p('hand.cow'), bit.offset, Buffer.of(cur | bit.mask));
    }
    const merged = await mooCopy(p('hand.cow'), p('hand-merged.img'));
    expect(diff(merged, expected, 'uml_moo merge vs expected')).toBeUndefined();
    expect(diff(await blkReadAll(p('hand.cow')), merged, 'blk read vs uml_moo merge')).toBeUndefined();
    expect([...(await blkAllocatedSectors(p('hand.cow')))].sort((a, b) => a - b)).toEqual(sectors);
  });

  it('reads the pre-2006 64-bit "broken v3" layout as uml_moo does', async (ctx) => {
    needPeers(ctx, PEERS.umlMkcow, PEERS.umlMoo);
    // uml_mkcow's v3 header re-laid out as 64-bit builds wrote it before Dec 2005
    // (cow-format.md §4.4): mtime@8, 4 pad bytes, size@16, sectorsize@24,
    // alignment@28, cow_format@32, path@36; bitmap still at roundup(4136, 4096).
    await runOk('uml_mkcow', [p('broken.cow'), p('base.img')]);
    const v3 = await peekBytes(p('broken.cow'), 0, 4128);
    const h = Buffer.alloc(4136);
    v3.copy(h, 0, 0, 12); // magic, version, mtime
    v3.copy(h, 16, 12, 32); // size, sectorsize, alignment, cow_format
    v3.copy(h, 36, 32, 4128); // path
    await pokeBytes(p('broken.cow'), 0, h);
    const g = cowGeometry('v3', SIZE);
    const expected = Buffer.from(base);
    for (const s of [5, 16, 17, 9000]) {
      const data = Buffer.alloc(SECTOR, s & 0xff);
      await pokeBytes(p('broken.cow'), sectorDataOffset(g, s), data);
      data.copy(expected, s * SECTOR);
      const bit = sectorBit(g, s);
      const cur = (await peekBytes(p('broken.cow'), bit.offset, 1))[0]!;
      await pokeBytes(p('broken.cow'), bit.offset, Buffer.of(cur | bit.mask));
    }
    const r = await run('uml_moo', [p('broken.cow'), p('broken-merged.img')]);
    expect(r.code).toBe(0);
    expect(r.stdout + r.stderr).toMatch(/broken V3 file with 64-bit layout/);
    const merged = await readBytes(p('broken-merged.img'));
    expect(diff(merged, expected, 'uml_moo merge vs expected')).toBeUndefined();
    const info = await blkInfo(p('broken.cow'));
    expect(info.formatSpecific).toMatchObject({
      variant: 'v3-broken',
      backingFile: p('base.img'),
      backingMtime: await mtimeSec(p('base.img')),
      backingSize: SIZE,
    });
    expect(diff(await blkReadAll(p('broken.cow')), merged, 'blk read vs uml_moo merge')).toBeUndefined();
  });

  it('writes into a uml_mkcow overlay so that uml_moo merges exactly what blk reads', async (ctx) => {
    needPeers(ctx, PEERS.umlMkcow, PEERS.umlMoo);
    await runOk('uml_mkcow', [p('mkw.cow'), p('base.img')]);
    const writes = guestWrites(SIZE, 11);
    await blkWrite(p('mkw.cow'), writes, { format: 'cow' });
    const expected = applyWrites(base, writes);
    const read = await blkReadAll(p('mkw.cow'));
    expect(diff(read, expected, 'blk read vs model')).toBeUndefined();
    expect(diff(await mooCopy(p('mkw.cow'), p('mkw-merged.img')), read, 'uml_moo merge vs blk read')).toBeUndefined();
  });

  it('writes at guest offset 0 of a uml_mkcow overlay opened the way users open it (format probed)', async (ctx) => {
    needPeers(ctx, PEERS.umlMkcow, PEERS.umlMoo);
    // A user opens an overlay without naming its format: the library probes it as cow.
    // Writing the guest's first sector (a partition table, a boot sector) must work and
    // reach uml_moo like any other write; the guest's bytes never change the file's header.
    await runOk('uml_mkcow', [p('probed.cow'), p('base.img')]);
    const writes = [
      { offset: 0, data: Buffer.alloc(4096, 0x42) },
      { offset: 70_000, data: Buffer.alloc(100, 0x43) },
    ];
    await blkWrite(p('probed.cow'), writes); // no format: probed
    const expected = applyWrites(base, writes);
    expect(diff(await mooCopy(p('probed.cow'), p('probed-merged.img')), expected, 'uml_moo merge')).toBeUndefined();
  });

  it("blk io -c 'write -P ...' into a blk-made overlay: uml_moo merges the patterns", async (ctx) => {
    needPeers(ctx, PEERS.umlMoo);
    const cow = p('io.cow');
    await createOverlay(cow, p('base.img'), 'v3');
    await blkCliOk(['io', '-c', 'write -P 0xcd 1000000 3333', cow]);
    await blkCliOk(['io', '-c', 'write -P 0xab 0 64k', cow]);
    const expected = applyWrites(base, [
      { offset: 1_000_000, data: Buffer.alloc(3333, 0xcd) },
      { offset: 0, data: Buffer.alloc(65536, 0xab) },
    ]);
    expect(diff(await mooCopy(cow, p('io-merged.img')), expected, 'uml_moo merge of blk io writes')).toBeUndefined();
  });
});

describe('uml-utilities: blk-made overlays merged by uml_moo', () => {
  it("creates an empty v3 overlay byte-identical to uml_mkcow's", async (ctx) => {
    needPeers(ctx, PEERS.umlMkcow);
    await runOk('uml_mkcow', [p('ref.cow'), p('base.img')]);
    await createOverlay(p('blk-empty.cow'), p('base.img'), 'v3');
    const ref = await readBytes(p('ref.cow'));
    const mine = await readBytes(p('blk-empty.cow'));
    expect(diff(mine, ref, 'blk v3 overlay vs uml_mkcow')).toBeUndefined();
  });

  const cases: Array<{ variant: UmlVariant; odd: boolean }> = [
    { variant: 'v3', odd: false },
    { variant: 'v3', odd: true },
    { variant: 'v2-uml', odd: false },
    { variant: 'v1', odd: false },
  ];
  for (const [i, { variant, odd }] of cases.entries()) {
    const label = `${variant}${odd ? ` (size ${ODD_SIZE}, not a page multiple)` : ''}`;
    it(`${label}: uml_moo copying and in-place merges equal blk's chain read`, async (ctx) => {
      needPeers(ctx, PEERS.umlMoo);
      const size = odd ? ODD_SIZE : SIZE;
      const backing = odd ? p('odd.img') : p('base.img');
      const backingBytes = odd ? oddBase : base;
      const cow = p(`case${i}.cow`);
      const writes = guestWrites(size, 100 + i);
      const expected = await blkOverlay(cow, backing, backingBytes, variant, writes);

      // The header as the spec lays it out (independent reading).
      const h = parseCowHeader(await peekBytes(cow, 0, 4136), variant);
      expect(h).toMatchObject({
        magicOk: true,
        version: Number(variant[1]),
        backingFile: backing,
        mtime: await mtimeSec(backing),
        size: BigInt(size),
        sectorSize: SECTOR,
      });
      if (variant === 'v3') expect(h).toMatchObject({ alignment: 4096, cowFormat: 0 });

      const read = await blkReadAll(cow);
      expect(diff(read, expected, 'blk read vs model')).toBeUndefined();
      expect([...(await blkAllocatedSectors(cow))].sort((a, b) => a - b)).toEqual(
        [...touchedSectors(writes)].sort((a, b) => a - b),
      );

      const merged = await mooCopy(cow, p(`case${i}-merged.img`));
      expect(diff(merged, read, `uml_moo ${cow} new.img vs blk read`)).toBeUndefined();
      const inPlace = await mooInPlace(cow, backing, p(`case${i}-base-copy.img`));
      expect(diff(inPlace, read, `uml_moo -d -b copy ${cow} vs blk read`)).toBeUndefined();
    });
  }
});

describe('uml-utilities: blk commit vs uml_moo -d', () => {
  for (const variant of ['v3', 'v2-uml', 'v1'] as const) {
    it(`${variant}: blk commit FILE writes the same backing file as uml_moo -d`, async (ctx) => {
      needPeers(ctx, PEERS.umlMoo);
      const baseA = p(`commit-${variant}-a.img`);
      const baseB = p(`commit-${variant}-b.img`);
      await cpP(p('base.img'), baseA);
      await cpP(p('base.img'), baseB);
      const cow = p(`commit-${variant}.cow`);
      const writes = guestWrites(SIZE, 200 + variant.length);
      const expected = await blkOverlay(cow, baseA, base, variant, writes);
      // uml_moo merges a byte copy of the same overlay into copy B (-b overrides the path).
      await cpP(cow, p(`commit-${variant}-copy.cow`));
      await runOk('uml_moo', ['-d', '-b', baseB, p(`commit-${variant}-copy.cow`)]);
      const byMoo = await readBytes(baseB);
      expect(diff(byMoo, expected, 'uml_moo -d result vs model')).toBeUndefined();

      await blkCliOk(['commit', cow]);
      const byBlk = await readBytes(baseA);
      expect(diff(byBlk, byMoo, 'blk commit result vs uml_moo -d result')).toBeUndefined();
      // After a commit without -d the overlay is emptied, records the backing file's new
      // mtime (so blk, uml_moo and UML still accept it), and still reads the same.
      expect((await blkAllocatedSectors(cow)).size).toBe(0);
      expect(diff(await blkReadAll(cow), expected, 'overlay read after commit')).toBeUndefined();
      expect(
        diff(await mooCopy(cow, p(`commit-${variant}-after.img`)), expected, 'uml_moo merge of the emptied overlay'),
      ).toBeUndefined();
    });
  }

  it('v3: blk commit -d keeps the overlay and writes what uml_moo -d writes', async (ctx) => {
    needPeers(ctx, PEERS.umlMoo);
    const baseA = p('commitd-a.img');
    const baseB = p('commitd-b.img');
    await cpP(p('base.img'), baseA);
    await cpP(p('base.img'), baseB);
    const cow = p('commitd.cow');
    const writes = guestWrites(SIZE, 300);
    const expected = await blkOverlay(cow, baseA, base, 'v3', writes);
    await cpP(cow, p('commitd-copy.cow'));
    await runOk('uml_moo', ['-d', '-b', baseB, p('commitd-copy.cow')]);
    await blkCliOk(['commit', '-d', cow]);
    expect(diff(await readBytes(baseA), await readBytes(baseB), 'blk commit -d vs uml_moo -d')).toBeUndefined();
    expect(diff(await readBytes(baseA), expected, 'blk commit -d vs model')).toBeUndefined();
    expect([...(await blkAllocatedSectors(cow))].sort((a, b) => a - b)).toEqual(
      [...touchedSectors(writes)].sort((a, b) => a - b),
    );
    // The kept overlay still merges (its header now records the committed backing file's mtime).
    expect(
      diff(await mooCopy(cow, p('commitd-after.img')), expected, 'uml_moo merge of the kept overlay'),
    ).toBeUndefined();
  });

  it('two levels: blk commit of top.cow into mid.cow gives an overlay uml_moo merges right', async (ctx) => {
    needPeers(ctx, PEERS.umlMoo);
    const mid = p('mid.cow');
    const top = p('top.cow');
    const w1 = guestWrites(SIZE, 400);
    const w2 = guestWrites(SIZE, 401);
    await createOverlay(mid, p('base.img'), 'v3');
    await blkWrite(mid, w1, { format: 'cow' });
    await createOverlay(top, mid, 'v3', 'cow');
    await blkWrite(top, w2, { format: 'cow', backingFormat: 'probe' });
    const expected = applyWrites(applyWrites(base, w1), w2);
    expect(
      diff(await blkReadAll(top, { backingFormat: 'probe' }), expected, 'blk read of 2-level chain'),
    ).toBeUndefined();
    // mid.cow's format is not recorded in top.cow (the cow header has no such field): --backing-probe.
    await blkCliOk(['commit', '--backing-probe', top]);
    expect(diff(await blkReadAll(mid), expected, 'blk read of mid after commit')).toBeUndefined();
    expect(
      diff(await mooCopy(mid, p('mid-merged.img')), expected, 'uml_moo merge of mid after commit'),
    ).toBeUndefined();
    expect([...(await blkAllocatedSectors(mid))].sort((a, b) => a - b)).toEqual(
      [...new Set([...touchedSectors(w1), ...touchedSectors(w2)])].sort((a, b) => a - b),
    );
  });
});

describe('uml-utilities: negative proofs (the comparisons catch wrong bytes)', () => {
  it("a corrupted data byte in a blk-made overlay makes uml_moo's merge differ from blk's read", async (ctx) => {
    needPeers(ctx, PEERS.umlMoo);
    const cow = p('neg-data.cow');
    const writes: Write[] = [{ offset: 8 * SECTOR, data: Buffer.alloc(4096, 0xab) }];
    const expected = await blkOverlay(cow, p('base.img'), base, 'v3', writes);
    const good = await mooCopy(cow, p('neg-data-good.img'));
    expect(diff(good, expected)).toBeUndefined();
    // Break it: one byte of sector 10's data.
    const at = sectorDataOffset(cowGeometry('v3', SIZE), 10) + 7;
    await pokeBytes(cow, at, Buffer.of(0xac));
    const bad = await mooCopy(cow, p('neg-data-bad.img'));
    const d = diff(bad, expected, 'uml_moo merge vs blk expected');
    expect(d).toBeDefined();
    expect(differingOffsets(bad, expected)).toEqual([10 * SECTOR + 7]);
  });

  it("a flipped bitmap bit order in a blk-made overlay makes uml_moo's merge differ", async (ctx) => {
    needPeers(ctx, PEERS.umlMoo);
    const cow = p('neg-bits.cow');
    const writes: Write[] = [{ offset: 3 * SECTOR, data: Buffer.alloc(SECTOR, 0x33) }];
    const expected = await blkOverlay(cow, p('base.img'), base, 'v3', writes);
    const g = cowGeometry('v3', SIZE);
    const bit = sectorBit(g, 3);
    const byte = (await peekBytes(cow, bit.offset, 1))[0]!;
    expect(byte).toBe(0x08); // LSB-first: sector 3 = bit 3 of byte 0
    await pokeBytes(cow, bit.offset, Buffer.of(0x10)); // MSB-first reading of "sector 3" would be bit 4
    const bad = await mooCopy(cow, p('neg-bits-bad.img'));
    expect(diff(bad, expected)).toBeDefined();
    const offs = differingOffsets(bad, expected);
    expect(Math.min(...offs)).toBeGreaterThanOrEqual(3 * SECTOR);
    expect(Math.max(...offs)).toBeLessThan(5 * SECTOR);
  });

  it('a wrong mtime in a blk-made overlay is refused by uml_moo (and by blk)', async (ctx) => {
    needPeers(ctx, PEERS.umlMoo);
    const cow = p('neg-mtime.cow');
    await blkOverlay(cow, p('base.img'), base, 'v3', [{ offset: 0, data: Buffer.alloc(SECTOR, 1) }]);
    const field = await peekBytes(cow, 8, 4);
    field.writeUInt32BE((field.readUInt32BE(0) + 1) >>> 0, 0);
    await pokeBytes(cow, 8, field);
    const r = await run('uml_moo', [cow, p('neg-mtime.img')]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/mtime mismatch/);
    await expect(stat(p('neg-mtime.img'))).rejects.toThrow();
    await expect(blkReadAll(cow)).rejects.toMatchObject({ kind: 'backing-mismatch' });
  });
});
