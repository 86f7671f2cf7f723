/**
 * Crash consistency of images (CrashMonkey/ALICE style): run random
 * workloads (writes of random sizes and alignments, flushes, discards, new
 * overlays, reopens) over cow chains and raw images on a `CrashSimVfs`, then
 * crash after every write point in many ways (power loss keeping chosen
 * subsets of the volatile sectors, torn multi-sector writes, killed process)
 * and check each post-crash state: the image opens, every sector reads a
 * value that some write put there since the last completed flush (old or
 * new; never zeros or garbage nobody wrote), and everything acknowledged by
 * a completed flush() is there.
 *
 * BLK_CRASH_STATES scales the number of crash states (default 30000).
 */
import { appendFileSync, mkdirSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { createImage, openImage, type BackingReference, type CacheMode, type Image, type MemoryVfs } from '@blk/images';
import { CrashSimVfs, Rng, SectorOracle, exploreCrashes, taggedData, type OracleDurability } from '@blk/faults';
import { envInt } from './fixtures/env.js';

const SIZE = 128 * 1024;

/** Appends a figure for the README's Guarantees section to .tmp/figures.jsonl (git-ignored). */
function recordFigure(name: string, value: unknown): void {
  try {
    mkdirSync('.tmp', { recursive: true });
    appendFileSync('.tmp/figures.jsonl', `${JSON.stringify({ name, at: new Date().toISOString(), value })}\n`);
  } catch {
    // Figures are a convenience; never fail a test over them.
  }
}
const BUDGET = envInt('BLK_CRASH_STATES', 30_000);
const backingFormat = (ref: BackingReference) => (ref.path.endsWith('.raw') ? 'raw' : 'cow');

interface Workload {
  name: string;
  format: 'cow' | 'raw';
  variant?: string;
  cache: CacheMode;
  ops: number;
  seed: number;
  snapshots?: boolean;
  discards?: boolean;
  /** Only crash by killing the process (for `unsafe`, which promises nothing across power loss). */
  killOnly?: boolean;
  /** Share of the budget (default 1). */
  weight?: number;
}

/** Each workload kind runs with this many seeds (more states need more distinct write histories). */
const SEEDS = Math.max(1, Math.ceil(BUDGET / 1200));

const WORKLOADS: Workload[] = [
  {
    name: 'cow v3 writeback: writes, flushes, discards, new overlays, reopens',
    format: 'cow',
    variant: 'v3',
    cache: 'writeback',
    ops: 120,
    seed: 1,
    snapshots: true,
    discards: true,
    weight: 3,
  },
  {
    name: 'cow v3 writethrough: writes, discards, reopens',
    format: 'cow',
    variant: 'v3',
    cache: 'writethrough',
    ops: 50,
    seed: 2,
    discards: true,
  },
  {
    name: 'cow v2-qemu-lp64 writeback, new overlays',
    format: 'cow',
    variant: 'v2-qemu-lp64',
    cache: 'writeback',
    ops: 80,
    seed: 3,
    snapshots: true,
    weight: 1.5,
  },
  { name: 'cow v1 writeback', format: 'cow', variant: 'v1', cache: 'writeback', ops: 60, seed: 4 },
  {
    name: 'cow v3 unsafe (process kill only)',
    format: 'cow',
    variant: 'v3',
    cache: 'unsafe',
    ops: 40,
    seed: 5,
    discards: true,
    killOnly: true,
    weight: 0.1,
  },
  { name: 'raw writeback', format: 'raw', cache: 'writeback', ops: 60, seed: 6 },
];

interface Recorded {
  vfs: CrashSimVfs;
  from: number;
  writePoints: number;
}

function durabilityOf(cache: CacheMode): OracleDurability {
  return cache === 'writethrough' ? 'write' : cache === 'unsafe' ? 'none' : 'flush';
}

async function openTop(vfs: CrashSimVfs | MemoryVfs, path: string, w: Workload, readOnly: boolean): Promise<Image> {
  // The workload opens cow overlays by probing, as users do (a probed cow image must accept
  // guest writes anywhere: regression test for the probe-guard bug); checks name the format.
  const format = !readOnly && w.format === 'cow' ? undefined : w.format;
  return openImage(path, { vfs, readOnly, cache: w.cache, format, backing: { format: backingFormat } });
}

/** Runs the workload once on a CrashSimVfs, with marks that let the oracle follow it. */
async function record(w: Workload): Promise<Recorded> {
  const vfs = new CrashSimVfs();
  const rng = new Rng(w.seed);
  const base = taggedData(0, 0, SIZE);
  let top: string;
  if (w.format === 'raw') {
    top = '/d/disk.raw';
    vfs.put(top, base);
  } else {
    vfs.put('/d/base.raw', base);
    top = '/d/top0.cow';
    await createImage(top, { vfs, format: 'cow', backing: '/d/base.raw', driverOptions: { variant: w.variant } });
  }
  vfs.syncAll();
  const from = vfs.log.length;
  vfs.mark('top', top);
  let image = await openTop(vfs, top, w, false);
  let writeId = 1;
  let layers = 1;
  const flushed = async (what: () => Promise<void>) => {
    vfs.mark('flush-start');
    await what();
    vfs.mark('flush-done');
  };
  for (let op = 0; op < w.ops; op++) {
    const r = rng.float();
    if (r < 0.62) {
      const aligned = rng.bool(0.5);
      const sectors = SIZE / 512;
      let offset: number;
      let length: number;
      if (aligned) {
        offset = rng.int(sectors) * 512;
        length = Math.min(SIZE - offset, rng.range(1, rng.bool(0.2) ? 24 : 4) * 512);
      } else {
        offset = rng.int(SIZE - 1);
        length = Math.min(SIZE - offset, rng.range(1, rng.bool(0.2) ? 9000 : 1500));
      }
      const data = taggedData(writeId++, offset, length);
      vfs.mark('write', { offset, data });
      await image.write(offset, data);
      vfs.mark('write-done', { offset, length });
    } else if (r < 0.72) {
      await flushed(() => image.flush());
    } else if (r < 0.84 && w.discards && w.format === 'cow') {
      const offset = rng.int(SIZE / 512) * 512;
      const length = Math.min(SIZE - offset, rng.range(1, 16) * 512);
      // After a discard the range reads from the layer below.
      const below = image.backing ? await image.backing.read(offset, length) : new Uint8Array(length);
      vfs.mark('write', { offset, data: below });
      await image.discard(offset, length);
      vfs.mark('write-done', { offset, length });
    } else if (r < 0.9 && w.snapshots && w.format === 'cow' && layers < 5) {
      await flushed(() => image.close());
      const next = `/d/top${layers++}.cow`;
      vfs.mark('create-start', next);
      // Public API, three and more levels deep (regression test for the createImage chain bug).
      await createImage(next, {
        vfs,
        format: 'cow',
        backing: { path: top, format: 'cow' },
        driverOptions: { variant: w.variant },
      });
      vfs.mark('create-done', next);
      top = next;
      vfs.mark('top', top);
      image = await openTop(vfs, top, w, false);
    } else {
      await flushed(() => image.close());
      image = await openTop(vfs, top, w, false);
    }
  }
  await flushed(() => image.close());
  return {
    vfs,
    from,
    writePoints: vfs.log.slice(from).filter((e) => e.type === 'write' || e.type === 'truncate' || e.type === 'flush')
      .length,
  };
}

function describeSector(content: Uint8Array, sector: number): string {
  const at = sector * 512;
  const view = new DataView(content.buffer, content.byteOffset + at, 16);
  if (content.subarray(at, at + 512).every((b) => b === 0)) return 'all zeros';
  return view.getUint32(0) === 0xb1c0ffee
    ? `data of write #${view.getUint32(4)} for offset ${view.getFloat64(8)}`
    : 'untagged bytes';
}

const totals = { points: 0, states: 0, workloads: 0 };

/** Crashes after every write point of one recorded workload and checks each state against the oracle. */
async function explore(w: Workload, vfs: CrashSimVfs, from: number, writePoints: number, budget: number) {
  const per = w.killOnly ? 1 : Math.max(2, Math.ceil(budget / Math.max(1, writePoints)));
  const oracle = new SectorOracle(SIZE, taggedData(0, 0, SIZE), 512, durabilityOf(w.cache));
  let top = '';
  let creating: string | undefined;
  return exploreCrashes({
    log: vfs.log,
    from,
    rng: new Rng(w.seed * 1000 + 1),
    statesPerPoint: per,
    maxStates: w.killOnly ? undefined : budget,
    onMark: (label, data) => {
      if (label === 'top') top = data as string;
      else if (label === 'write') {
        const d = data as { offset: number; data: Uint8Array };
        oracle.write(d.offset, d.data);
      } else if (label === 'write-done') {
        const d = data as { offset: number; length: number };
        oracle.writeDone(d.offset, d.length);
      } else if (label === 'flush-done') oracle.flushed();
      else if (label === 'create-start') creating = data as string;
      else if (label === 'create-done') creating = undefined;
    },
    check: async (state) => {
      let image: Image;
      try {
        image = await openTop(state, top, w, true);
      } catch (err) {
        return `reopen of ${top} failed: ${(err as Error).message}`;
      }
      let content: Uint8Array;
      try {
        content = await image.read(0, SIZE);
      } finally {
        await image.close();
      }
      const bad = oracle.check(content);
      if (bad) {
        return (
          `${top}: sector ${bad.sector} reads ${describeSector(content, bad.sector)}, `
          + `not the ${bad.expected === 'durable' ? 'flushed' : 'old or new'} value`
        );
      }
      if (creating && (await state.exists(creating))) {
        // A crash inside create: the new overlay may be unusable, but only with a typed error.
        try {
          const fresh = await openTop(state, creating, w, true);
          const c2 = await fresh.read(0, SIZE);
          await fresh.close();
          const bad2 = oracle.check(c2);
          if (bad2) return `half-created ${creating}: sector ${bad2.sector} reads ${describeSector(c2, bad2.sector)}`;
        } catch (err) {
          if ((err as { name?: string }).name !== 'BlockError') return `half-created ${creating}: ${String(err)}`;
        }
      }
    },
  });
}

describe('crash consistency: every write point, many crash states each', () => {
  const weightSum = WORKLOADS.reduce((n, w) => n + (w.weight ?? 1), 0);

  for (const kind of WORKLOADS) {
    it(kind.name, async () => {
      const sum = { points: 0, states: 0, byLabel: {} as Record<string, number> };
      for (let k = 0; k < SEEDS; k++) {
        const w = { ...kind, seed: kind.seed + 1000 * k };
        const { vfs, from, writePoints } = await record(w);
        const budget = Math.max(writePoints, Math.round((BUDGET * (w.weight ?? 1)) / weightSum / SEEDS));
        const result = await explore(w, vfs, from, writePoints, budget);
        sum.points += result.points;
        sum.states += result.states;
        for (const [label, n] of Object.entries(result.byLabel)) sum.byLabel[label] = (sum.byLabel[label] ?? 0) + n;
        expect(result.violations.slice(0, 3), `seed ${w.seed}`).toEqual([]);
        expect(result.points).toBeGreaterThan(10);
      }
      totals.points += sum.points;
      totals.states += sum.states;
      totals.workloads += SEEDS;
      console.log(
        `FIGURE crash ${kind.name}: ${SEEDS} seeds, ${sum.points} write points, ${sum.states} crash states `
          + `(${Object.entries(sum.byLabel)
            .map(([k, v]) => `${k} ${v}`)
            .join(', ')})`,
      );
    }, 600_000);
  }

  it('the checker catches a write-ordering bug (unsafe cache, which skips the flushes, under power loss)', async () => {
    const w: Workload = {
      name: 'unsafe under power loss',
      format: 'cow',
      variant: 'v3',
      cache: 'unsafe',
      ops: 60,
      seed: 77,
    };
    const { vfs, from } = await record(w);
    // Judge it by the writeback promise: flushed data must be there, and bits must not outrun data.
    const oracle = new SectorOracle(SIZE, taggedData(0, 0, SIZE), 512, 'flush');
    const result = await exploreCrashes({
      log: vfs.log,
      from,
      rng: new Rng(5),
      statesPerPoint: 24,
      stopOnFailure: true,
      onMark: (label, data) => {
        if (label === 'write') oracle.write((data as { offset: number }).offset, (data as { data: Uint8Array }).data);
        else if (label === 'flush-done') oracle.flushed();
      },
      check: async (state) => {
        const image = await openTop(state, '/d/top0.cow', w, true);
        const content = await image.read(0, SIZE);
        await image.close();
        const bad = oracle.check(content);
        return bad ? `sector ${bad.sector}: ${describeSector(content, bad.sector)}` : undefined;
      },
    });
    expect(result.violations.length).toBeGreaterThan(0);
  });

  it('totals', () => {
    console.log(
      `FIGURE crash total: ${totals.workloads} workloads, ${totals.points} write points, ${totals.states} crash states checked`,
    );
    recordFigure('crash', totals);
    expect(totals.states).toBeGreaterThan(Math.min(BUDGET * 0.5, 1000));
  });
});
