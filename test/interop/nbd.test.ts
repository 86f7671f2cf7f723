/**
 * Interop with nbdkit and libnbd (nbdinfo, nbdcopy): a third, independent
 * reader of what blk writes. nbdkit's file plugin serves a raw file over NBD
 * and answers block-status queries from SEEK_DATA/SEEK_HOLE; nbdinfo --map
 * prints them and nbdcopy reads the bytes. So:
 *  - blk map's zero runs of a raw file are exactly the NBD server's holes, and
 *    its data runs exactly the server's data;
 *  - a COW chain blk converted to raw reads over NBD as blk reads the chain,
 *    and keeps its holes (nbdinfo --map agrees with blk map of the output).
 */
import { truncate } from 'node:fs/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { diff, lineImage, pokeBytes, readBytes, tempDir, writeBytes, type Write } from './helpers/files.js';
import { PEERS, needPeers, runOk } from './helpers/peers.js';
import { blkCliOk, blkReadAll, blkWrite, createOverlay } from './helpers/blk.js';
import { MiB } from './helpers/scenarios.js';

let dir: string;
let cleanup: () => Promise<void>;
let p: (name: string) => string;

beforeAll(async () => {
  ({ dir, cleanup } = await tempDir('nbd'));
  p = (name) => `${dir}/${name}`;
});
afterAll(async () => {
  await cleanup?.();
});

interface Run {
  start: number;
  length: number;
  /** True for a hole (reads as zeros, nothing stored). */
  hole: boolean;
}

/** Adjacent runs of the same kind as one (the two tools split differently where nothing changes). */
function merged(runs: Run[]): Run[] {
  const out: Run[] = [];
  for (const r of runs) {
    const last = out[out.length - 1];
    if (last && last.hole === r.hole && last.start + last.length === r.start) last.length += r.length;
    else out.push({ ...r });
  }
  return out;
}

/** The NBD server's view: nbdkit's file plugin, asked by nbdinfo --map (base:allocation). */
async function nbdMap(file: string): Promise<Run[]> {
  const { stdout } = await runOk('nbdkit', ['-U', '-', 'file', file, '--run', 'nbdinfo --map --json "$uri"']);
  const extents = JSON.parse(stdout) as Array<{ offset: number; length: number; type: number }>;
  // type bit 0: hole, bit 1: reads as zero (NBD_STATE_HOLE, NBD_STATE_ZERO).
  return merged(extents.map((e) => ({ start: e.offset, length: e.length, hole: (e.type & 1) !== 0 })));
}

async function blkMap(file: string): Promise<Run[]> {
  const { stdout } = await blkCliOk(['map', '--output=json', file]);
  const entries = JSON.parse(stdout) as Array<{ start: number; length: number; zero: boolean; data: boolean }>;
  for (const e of entries) expect(e.zero).toBe(!e.data); // a raw file: data, or a hole that reads as zeros
  return merged(entries.map((e) => ({ start: e.start, length: e.length, hole: !e.data })));
}

describe('nbdkit + libnbd: block status and bytes over NBD', () => {
  it("blk map of a sparse raw file blk wrote: zero runs are the NBD server's holes, data runs its data", async (ctx) => {
    needPeers(ctx, PEERS.nbdkit, PEERS.nbdinfo);
    const f = p('sparse.raw');
    await blkCliOk(['create', '-q', '-f', 'raw', f, '8M']);
    const writes: Write[] = [
      { offset: 0, data: lineImage(64 * 1024, 1) },
      { offset: 2 * MiB + 4096, data: lineImage(12 * 1024, 2) },
      { offset: 5 * MiB, data: new Uint8Array(256 * 1024) }, // written zeros: stored, so data to both
      { offset: 8 * MiB - 4096, data: lineImage(4096, 3) },
    ];
    await blkWrite(f, writes, { format: 'raw' });
    const theirs = await nbdMap(f);
    expect(theirs.some((r) => r.hole)).toBe(true); // the file system here reports holes
    expect(await blkMap(f)).toEqual(theirs);
  });

  it('a COW chain converted to raw by blk: nbdcopy reads what blk reads from the chain, holes kept alike', async (ctx) => {
    needPeers(ctx, PEERS.nbdkit, PEERS.nbdinfo, PEERS.nbdcopy);
    const base = p('base.raw');
    await writeBytes(base, Buffer.alloc(0));
    await truncate(base, 6 * MiB);
    await pokeBytes(base, MiB, lineImage(MiB, 4));
    await createOverlay(p('top.cow'), base, 'v3');
    await blkWrite(p('top.cow'), [
      { offset: 512, data: lineImage(3 * 512, 5) },
      { offset: 1536 * 1024, data: lineImage(64 * 1024, 6) },
      { offset: 4 * MiB, data: lineImage(128 * 1024, 7) },
    ]);
    await blkCliOk(['convert', '-O', 'raw', p('top.cow'), p('out.raw')]);
    await runOk('nbdkit', [
      '-U',
      '-',
      '-r',
      'file',
      p('out.raw'),
      '--run',
      `nbdcopy "$uri" ${JSON.stringify(p('copy.raw'))}`,
    ]);
    expect(
      diff(
        await readBytes(p('copy.raw')),
        await blkReadAll(p('top.cow'), { readOnly: true }),
        'nbdcopy of blk convert vs the chain',
      ),
    ).toBeUndefined();
    const theirs = await nbdMap(p('out.raw'));
    expect(theirs.filter((r) => r.hole).length).toBeGreaterThanOrEqual(2); // before and after the data
    expect(await blkMap(p('out.raw'))).toEqual(theirs);
  });
});
