/**
 * Interop with the User-Mode-Linux kernel's ubd driver (Debian
 * user-mode-linux, linux.uml): the real consumer of COW overlays.
 *
 * Boot 1 (one UML run, several disks):
 *   ubd0 v3 overlay (blk-made, blk-written)      ubd3 uml_mkcow overlay
 *   ubd1 v2-uml overlay (blk-made, blk-written)   ubd4 v3, one data byte corrupted on purpose
 *   ubd2 v1 overlay (blk-made, blk-written)       ubd5 v3, header mtime off by one on purpose
 *   ubd6 v3 overlay over a 5 GiB sparse backing file (offsets and sizes past 2^32)
 *   ubd7 an overlay UML itself creates (`ubd7=missing.cow,backing`)
 * Inside UML, dd reads every device page by page (bs=4096 iflag=direct:
 * UML 6.1 has a multi-page read bug, peers.md §6.4) into a rw hostfs dir,
 * then writes known patterns with oflag=direct (so exactly the written
 * sectors get bits) and dumps the devices again. On the host: what UML read
 * equals what blk wrote; what blk reads (and the bits it sees) equals what
 * UML wrote; uml_moo agrees; the two broken disks are caught.
 *
 * Boot 2 (two levels): blk puts a v3 overlay on top of the UML-written v3
 * overlay, writes, and commits it down into it; UML then reads the result
 * and writes more; finally blk commits the UML-written overlay into its
 * backing file and the result is compared with uml_moo -d.
 *
 * UML needs the header's size and mtime to match the backing file exactly,
 * so each disk opening at all is part of the proof. Every boot is bounded by
 * `timeout -k 5 120`; if UML cannot start here, the tests skip and say why.
 */
import { afterAll, beforeAll, describe, expect, it, type TestContext } from 'vitest';
import { truncate } from 'node:fs/promises';
import { PEERS, missingPeers, runOk, skipUnless } from './helpers/peers.js';
import {
  Prng,
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
  sectorRuns,
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
  openBlk,
  type CowVariant,
} from './helpers/blk.js';
import { cowGeometry, sectorDataOffset } from './helpers/cowfile.js';
import { MiB, guestWrites, mooCopy, mooInPlace } from './helpers/scenarios.js';
import { bootUml, logTail, ubd, umlUnavailable, type UmlDisk, type UmlRun } from './helpers/uml.js';

const SIZE = 8 * MiB;
const SECTORS = SIZE / SECTOR;

/** UML's writes: [first sector, count]; overlaps blk's sector 3 and page 8..15 on purpose. */
const UML_WRITES: Array<[number, number]> = [
  [1, 1],
  [3, 1],
  [9, 2],
  [100, 3],
  [1000, 8],
  [4095, 1],
  [8000, 16],
  [SECTORS - 1, 1],
];
/** UML's writes in boot 2. */
const UML_WRITES_2: Array<[number, number]> = [
  [2, 1],
  [20, 4],
  [5000, 8],
  [SECTORS - 9, 3],
];

interface Disk {
  name: string;
  variant: CowVariant | 'uml_mkcow';
  cow: string;
  backing: string;
  /** What the disk should read as before UML writes (blk's view). */
  pre: Buffer;
  /** ... and after UML's writes. */
  post: Buffer;
  blkWrites: Write[];
}

let dir: string;
let cleanup: () => Promise<void>;
let p: (name: string) => string;
let base: Buffer;
let pattern: Buffer;
let disks: Disk[] = [];
let boot1: UmlRun | undefined;

/** ubd6: the big disk. Only windows of it are modelled (the rest is a hole in every file). */
const BIG = 5 * 1024 * MiB;
const GiB4 = 2 ** 32;
/** [offset, length] windows that are read back, 4 KiB aligned: across the 4 GiB boundary, and the end. */
const BIG_WINDOWS: Array<[number, number]> = [
  [GiB4 - 65536, 131072],
  [BIG - 65536, 65536],
];
const BIG_BLK_WRITES: Write[] = [
  { offset: GiB4 - 1000, data: new Prng(61).bytes(3000) }, // straddles 2^32, unaligned both ends
  { offset: BIG - 4096, data: new Prng(62).bytes(4096) },
];
/** UML writes [sector, count] on the big disk: just past 2^32 bytes, and the last sector. */
const BIG_UML_WRITES: Array<[number, number]> = [
  [GiB4 / SECTOR + 7, 2],
  [BIG / SECTOR - 1, 1],
];
let bigBase: Map<number, Buffer>;
/** Why the UML tests cannot run here (set in beforeAll). */
let unavailable: string | undefined;

/** UML's writes as blk-style writes (pattern sectors used in order). */
function umlWrites(list: Array<[number, number]>, patternStart = 0): Write[] {
  let ps = patternStart;
  return list.map(([s, n]) => {
    const w = { offset: s * SECTOR, data: pattern.subarray(ps * SECTOR, (ps + n) * SECTOR) };
    ps += n;
    return w;
  });
}

/** Shell lines that write `list` into `dev` with dd, direct I/O, pattern sectors in order. */
function ddWrites(dev: string, list: Array<[number, number]>, patternStart = 0): string {
  let ps = patternStart;
  return list
    .map(([s, n]) => {
      const line =
        `dd if=${p('pattern.bin')} of=${dev} bs=512 skip=${ps} seek=${s} count=${n} conv=notrunc oflag=direct 2>/dev/null`
        + ` || echo "UMLINIT: WRITE-FAILED ${dev} ${s}+${n}"`;
      ps += n;
      return line;
    })
    .join('\n');
}

/** Shell line that dumps `dev` page by page into $OUT/name. */
const ddDump = (dev: string, name: string) =>
  `dd if=${dev} of="$OUT/${name}" bs=4096 iflag=direct 2>/dev/null || echo "UMLINIT: READ-FAILED ${dev} ${name}"`;

/** Shell line that copies [off, off+len) of `dev` (4 KiB aligned) into $OUT/name. */
const ddWindow = (dev: string, off: number, len: number, name: string) =>
  `dd if=${dev} of="$OUT/${name}" bs=4096 skip=${off / 4096} count=${len / 4096} iflag=direct 2>/dev/null`
  + ` || echo "UMLINIT: READ-FAILED ${dev} ${name}"`;

/** The model of a big-disk window: backing window + blk writes (+ UML writes). */
function bigWindow(off: number, len: number, withUml: boolean): Buffer {
  const out = Buffer.from(bigBase.get(off)!);
  const writes = [...BIG_BLK_WRITES, ...(withUml ? umlWrites(BIG_UML_WRITES) : [])];
  for (const w of writes) {
    const from = Math.max(w.offset, off);
    const to = Math.min(w.offset + w.data.length, off + len);
    if (from < to) out.set(w.data.subarray(from - w.offset, to - w.offset), from - off);
  }
  return out;
}

function needUml(ctx: TestContext): UmlRun {
  skipUnless(ctx, unavailable);
  return boot1!;
}

beforeAll(async () => {
  ({ dir, cleanup } = await tempDir('uml'));
  p = (name) => `${dir}/${name}`;
  unavailable = umlUnavailable() ?? missingPeers(PEERS.umlMkcow, PEERS.umlMoo);
  if (unavailable) return;

  base = lineImage(SIZE, 20);
  pattern = new Prng(77).bytes(256 * SECTOR);
  await writeBytes(p('base.img'), base);
  await writeBytes(p('pattern.bin'), pattern);

  const make = async (name: string, variant: Disk['variant'], seed: number): Promise<Disk> => {
    const backing = p(`${name}-base.img`);
    await cpP(p('base.img'), backing); // own backing per disk, so each can be committed into
    const cow = p(`${name}.cow`);
    let blkWrites: Write[] = [];
    if (variant === 'uml_mkcow') {
      await runOk('uml_mkcow', [cow, backing]);
    } else {
      await createOverlay(cow, backing, variant);
      blkWrites = seed === 0 ? [] : guestWrites(SIZE, seed);
      await blkWrite(cow, blkWrites, { format: 'cow' });
    }
    const pre = applyWrites(base, blkWrites);
    return { name, variant, cow, backing, pre, post: applyWrites(pre, umlWrites(UML_WRITES)), blkWrites };
  };
  disks = [
    await make('v3', 'v3', 1),
    await make('v2', 'v2-uml', 2),
    await make('v1', 'v1', 3),
    await make('mk', 'uml_mkcow', 0),
  ];
  // ubd4: blk-written v3 with one data byte changed behind blk's back.
  const bad = await make('bad-data', 'v3', 0);
  bad.blkWrites = [{ offset: 8 * SECTOR, data: Buffer.alloc(4096, 0xab) }];
  await blkWrite(bad.cow, bad.blkWrites, { format: 'cow' });
  bad.pre = applyWrites(base, bad.blkWrites);
  await pokeBytes(bad.cow, sectorDataOffset(cowGeometry('v3', SIZE), 10) + 7, Buffer.of(0xac));
  disks.push(bad);
  // ubd5: blk-made v3 whose header mtime is one second off.
  const stale = await make('bad-mtime', 'v3', 5);
  const field = await peekBytes(stale.cow, 8, 4);
  field.writeUInt32BE((field.readUInt32BE(0) + 1) >>> 0, 0);
  await pokeBytes(stale.cow, 8, field);
  disks.push(stale);

  // ubd6: 5 GiB sparse backing with line data in the windows; blk writes across 2^32 and at the end.
  await writeBytes(p('big-base.img'), Buffer.alloc(0));
  await truncate(p('big-base.img'), BIG);
  bigBase = new Map();
  for (const [i, [off, len]] of BIG_WINDOWS.entries()) {
    const data = lineImage(len, 30 + i);
    await pokeBytes(p('big-base.img'), off, data);
    bigBase.set(off, data);
  }
  await createOverlay(p('big.cow'), p('big-base.img'), 'v3');
  await blkWrite(p('big.cow'), BIG_BLK_WRITES, { format: 'cow' });
  // ubd7: UML creates this overlay itself.
  await cpP(p('base.img'), p('umlmade-base.img'));

  const uml: UmlDisk[] = [
    ...disks.map((d) => ({ file: d.cow, backing: d.backing })),
    { file: p('big.cow'), backing: p('big-base.img') },
    { file: p('umlmade.cow'), backing: p('umlmade-base.img') },
  ];
  const script = [
    ...disks.slice(0, 5).map((d, i) => ddDump(ubd(i), `pre-${d.name}.img`)),
    `dd if=${ubd(5)} of=/dev/null bs=4096 count=1 iflag=direct 2>/dev/null && echo "UMLINIT: OPENED-bad-mtime" || echo "UMLINIT: REFUSED-bad-mtime"`,
    `echo "UMLINIT: big-size $(cat /sys/block/ubdg/size)"`,
    ...BIG_WINDOWS.map(([off, len], i) => ddWindow(ubd(6), off, len, `big-pre-${i}.bin`)),
    ...disks.slice(0, 4).map((_, i) => ddWrites(ubd(i), UML_WRITES)),
    ddWrites(ubd(6), BIG_UML_WRITES),
    ddWrites(ubd(7), UML_WRITES),
    'sync',
    ...disks.slice(0, 4).map((d, i) => ddDump(ubd(i), `post-${d.name}.img`)),
    ...BIG_WINDOWS.map(([off, len], i) => ddWindow(ubd(6), off, len, `big-post-${i}.bin`)),
  ].join('\n');
  boot1 = await bootUml(p('boot1'), uml, script);
  if (!boot1.started) {
    unavailable = `UML could not start on this machine (linux.uml exit ${boot1.code}, ${boot1.ms} ms); log tail:\n${logTail(boot1)}`;
    console.warn(`[interop] ${unavailable}`); // each test then skips (or fails with BLK_INTEROP_REQUIRE=1)
  } else {
    console.log(`[interop] UML boot 1 took ${boot1.ms} ms; markers: ${boot1.markers.join(' | ')}`);
  }
}, 240_000);

afterAll(async () => {
  await cleanup?.();
});

describe('user-mode-linux: one boot over blk-made v3, v2-uml and v1 overlays', () => {
  it('UML boots, runs the whole script and every dd succeeds on the good disks', (ctx) => {
    const run = needUml(ctx);
    expect(run.finished, `UML did not finish its script; log tail:\n${logTail(run)}`).toBe(true);
    const failures = run.markers.filter((m) => /FAILED/.test(m) && !/bad-mtime/.test(m));
    expect(failures).toEqual([]);
  });

  for (const [i, name] of ['v3', 'v2', 'v1'].entries()) {
    it(`${name}: dd inside UML reads exactly what blk wrote`, async (ctx) => {
      const run = needUml(ctx);
      const d = disks[i]!;
      const seen = await readBytes(`${run.outDir}/pre-${name}.img`);
      expect(diff(seen, d.pre, `UML read of blk-written ${d.variant} overlay vs blk's writes`)).toBeUndefined();
    });
  }

  for (const [i, name] of ['v3', 'v2', 'v1', 'mk'].entries()) {
    it(`${name}: blk reads exactly what UML wrote (data and bitmap), and uml_moo agrees`, async (ctx) => {
      const run = needUml(ctx);
      const d = disks[i]!;
      const dumped = await readBytes(`${run.outDir}/post-${name}.img`);
      expect(diff(dumped, d.post, 'UML dump after its writes vs model')).toBeUndefined();
      expect(diff(await blkReadAll(d.cow), d.post, `blk read of UML-written ${d.variant} overlay`)).toBeUndefined();
      const expectBits = new Set([...touchedSectors(d.blkWrites), ...touchedSectors(umlWrites(UML_WRITES))]);
      const bits = await blkAllocatedSectors(d.cow);
      expect(sectorRuns(bits), 'sectors blk sees as held by the overlay').toEqual(sectorRuns(expectBits));
      expect(diff(await mooCopy(d.cow, p(`merged-${name}.img`)), d.post, 'uml_moo merge')).toBeUndefined();
    });
  }

  it('negative proof: a corrupted data byte in a blk-made overlay shows up in what UML reads', async (ctx) => {
    const run = needUml(ctx);
    const d = disks[4]!;
    const seen = await readBytes(`${run.outDir}/pre-bad-data.img`);
    expect(diff(seen, d.pre), 'the comparison must detect the broken byte').toBeDefined();
    expect(differingOffsets(seen, d.pre)).toEqual([10 * SECTOR + 7]);
  });

  it('negative proof: UML refuses a blk-made overlay whose header mtime is wrong', (ctx) => {
    const run = needUml(ctx);
    expect(run.markers).toContain('REFUSED-bad-mtime');
    expect(run.log).toMatch(/mtime mismatch/);
    // ... and the good disks were not refused (their mtime and size are right).
    for (const d of disks.slice(0, 4)) expect(run.log).not.toContain(`Failed to open '${d.cow}'`);
  });

  it("past 4 GiB (5 GiB v3 overlay): UML reads blk's writes across 2^32 and at the end; blk reads UML's", async (ctx) => {
    const run = needUml(ctx);
    expect(run.markers).toContain(`big-size ${BIG / SECTOR}`);
    for (const [i, [off, len]] of BIG_WINDOWS.entries()) {
      const pre = await readBytes(`${run.outDir}/big-pre-${i}.bin`);
      expect(diff(pre, bigWindow(off, len, false), `UML read of window ${off}+${len}`)).toBeUndefined();
      const post = await readBytes(`${run.outDir}/big-post-${i}.bin`);
      expect(diff(post, bigWindow(off, len, true), `UML read after its writes, window ${off}+${len}`)).toBeUndefined();
    }
    const image = await openBlk(p('big.cow'), { readOnly: true });
    try {
      expect(image.size).toBe(BIG);
      for (const [off, len] of BIG_WINDOWS) {
        const got = Buffer.from(await image.read(off, len));
        expect(diff(got, bigWindow(off, len, true), `blk read of window ${off}+${len}`)).toBeUndefined();
      }
    } finally {
      await image.close();
    }
    const expectBits = new Set([...touchedSectors(BIG_BLK_WRITES), ...touchedSectors(umlWrites(BIG_UML_WRITES))]);
    expect(sectorRuns(await blkAllocatedSectors(p('big.cow')))).toEqual(sectorRuns(expectBits));
  });

  it('an overlay UML created itself opens in blk with every field right and reads what UML wrote', async (ctx) => {
    const run = needUml(ctx);
    expect(run.log).toMatch(/Creating ".*umlmade\.cow" as COW file/);
    const info = await blkInfo(p('umlmade.cow'));
    expect(info.format).toBe('cow');
    expect(info.size).toBe(SIZE);
    expect(info.formatSpecific).toMatchObject({
      variant: 'v3',
      version: 3,
      backingFile: p('umlmade-base.img'),
      backingMtime: await mtimeSec(p('umlmade-base.img')),
      backingSize: SIZE,
      alignment: 4096,
    });
    const expected = applyWrites(base, umlWrites(UML_WRITES));
    expect(diff(await blkReadAll(p('umlmade.cow')), expected, 'blk read of the UML-created overlay')).toBeUndefined();
    expect(sectorRuns(await blkAllocatedSectors(p('umlmade.cow')))).toEqual(
      sectorRuns(touchedSectors(umlWrites(UML_WRITES))),
    );
    expect(diff(await mooCopy(p('umlmade.cow'), p('umlmade-merged.img')), expected, 'uml_moo merge')).toBeUndefined();
  });
});

describe('user-mode-linux: two levels, blk commits what UML wrote', () => {
  it('blk commits a top overlay into the UML-written v3 overlay; UML reads it; blk commits that into the backing like uml_moo -d', async (ctx) => {
    needUml(ctx);
    const mid = disks[0]!;
    const top = p('top.cow');
    // Level 2 on top of the overlay UML wrote in boot 1.
    await createOverlay(top, mid.cow, 'v3', 'cow');
    const topWrites = guestWrites(SIZE, 9);
    await blkWrite(top, topWrites, { format: 'cow', backingFormat: 'probe' });
    const expected2 = applyWrites(mid.post, topWrites);
    expect(
      diff(await blkReadAll(top, { backingFormat: 'probe' }), expected2, 'blk read of the 3-file chain'),
    ).toBeUndefined();
    // mid's format is not recorded in top.cow (the cow header has no such field): --backing-probe.
    await blkCliOk(['commit', '--backing-probe', top]);
    expect(diff(await blkReadAll(mid.cow), expected2, 'blk read of mid after commit')).toBeUndefined();
    expect(
      diff(await mooCopy(mid.cow, p('mid-merged.img')), expected2, 'uml_moo merge of mid after commit'),
    ).toBeUndefined();

    // Boot 2: UML reads the committed overlay, then writes more into it.
    const run = await bootUml(
      p('boot2'),
      [{ file: mid.cow, backing: mid.backing }],
      [ddDump(ubd(0), 'mid-pre.img'), ddWrites(ubd(0), UML_WRITES_2, 100), 'sync', ddDump(ubd(0), 'mid-post.img')].join(
        '\n',
      ),
    );
    skipUnless(ctx, run.started ? undefined : `UML could not start for boot 2; log tail:\n${logTail(run)}`);
    console.log(`[interop] UML boot 2 took ${run.ms} ms; markers: ${run.markers.join(' | ')}`);
    expect(run.finished, `UML boot 2 did not finish; log tail:\n${logTail(run)}`).toBe(true);
    expect(run.markers.filter((m) => /FAILED/.test(m))).toEqual([]);
    expect(
      diff(await readBytes(`${run.outDir}/mid-pre.img`), expected2, 'UML read of blk-committed overlay'),
    ).toBeUndefined();
    const expected3 = applyWrites(expected2, umlWrites(UML_WRITES_2, 100));
    expect(
      diff(await readBytes(`${run.outDir}/mid-post.img`), expected3, 'UML dump after boot-2 writes'),
    ).toBeUndefined();
    expect(diff(await blkReadAll(mid.cow), expected3, 'blk read after boot 2')).toBeUndefined();

    // Commit what UML wrote into the backing file: blk commit vs uml_moo -d on a cp -p copy.
    await cpP(mid.cow, p('mid-copy.cow'));
    const byMoo = await mooInPlace(p('mid-copy.cow'), mid.backing, p('mid-base-moo.img'));
    await blkCliOk(['commit', mid.cow]);
    const byBlk = await readBytes(mid.backing);
    expect(diff(byBlk, byMoo, 'blk commit vs uml_moo -d')).toBeUndefined();
    expect(diff(byBlk, expected3, 'blk commit vs model')).toBeUndefined();
  }, 240_000);

  it('v2-uml: blk commit of the UML-written overlay equals uml_moo -d', async (ctx) => {
    needUml(ctx);
    const d = disks[1]!;
    await cpP(d.cow, p('v2-copy.cow'));
    const byMoo = await mooInPlace(p('v2-copy.cow'), d.backing, p('v2-base-moo.img'));
    await blkCliOk(['commit', d.cow]);
    const byBlk = await readBytes(d.backing);
    expect(diff(byBlk, byMoo, 'blk commit vs uml_moo -d')).toBeUndefined();
    expect(diff(byBlk, d.post, 'blk commit vs model')).toBeUndefined();
  });
});
