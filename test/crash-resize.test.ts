/**
 * Crash consistency of resizing a cow image in place (Image.resize, what
 * `blk resize` runs): grow, shrink, grow again, crashed after every write
 * point in many ways. Each post-crash state must open with the size before
 * or after the resize in progress (never a header naming a bitmap the file
 * lacks), read the written data below the smallest size so far, read zeros
 * wherever no write reaches, and never bring data dropped by a shrink back
 * after a grow. Over a longer backing file, the backing file's bytes must
 * never show: neither in a grown part (allocated as zeros before the header
 * names it) nor in a shrink's dropped part while the header still has the old
 * size (its bits are cleared only after). Nothing may read as garbage.
 *
 * BLK_CRASH_STATES scales the number of crash states (default 30000; a tenth here).
 */
import { describe, expect, it } from 'vitest';
import { createImage, openImage, type CacheMode } from '@blk/images';
import { CrashSimVfs, Rng, exploreCrashes } from '@blk/faults';
import { envInt } from './fixtures/env.js';

const KiB = 1024;
const BUDGET = Math.max(200, Math.floor(envInt('BLK_CRASH_STATES', 30_000) / 10));
const FILE = '/d/q.cow';

/** What sector `s` holds after the first write: a byte that names it, never zero. */
const fill = (s: number) => ((s * 7) % 255) + 1;

interface Phase {
  from: number;
  to: number;
}

/** Sizes in order: grow within the bitmap's slack, shrink, grow again over the dropped part. */
const SIZES = [512 * KiB, 896 * KiB, 256 * KiB, 768 * KiB];

/** A backing file longer than every size, holding a byte no write and no zero uses: it must never show. */
const BACKING = '/d/b.raw';
const BACKING_BYTE = 0xbb;

async function record(
  variant: string,
  cache: CacheMode,
  written: boolean,
  backed = false,
): Promise<{ vfs: CrashSimVfs; from: number }> {
  const vfs = new CrashSimVfs();
  if (backed) {
    await createImage(BACKING, { vfs, format: 'raw', size: 1024 * KiB });
    const base = await openImage(BACKING, { vfs, format: 'raw' });
    await base.write(0, new Uint8Array(1024 * KiB).fill(BACKING_BYTE));
    await base.close();
  }
  await createImage(FILE, {
    vfs,
    format: 'cow',
    size: SIZES[0]!,
    driverOptions: { variant },
    ...(backed ? { backing: BACKING } : {}),
  });
  let image = await openImage(FILE, { vfs, format: 'cow', cache });
  if (written) {
    const data = new Uint8Array(SIZES[0]!);
    for (let s = 0; s < data.length / 512; s++) data.fill(fill(s), s * 512, (s + 1) * 512);
    await image.write(0, data);
  }
  await image.close();
  vfs.syncAll();
  const from = vfs.log.length;
  for (let i = 1; i < SIZES.length; i++) {
    vfs.mark('phase', { from: SIZES[i - 1], to: SIZES[i] } satisfies Phase);
    image = await openImage(FILE, { vfs, format: 'cow', cache });
    await image.resize(SIZES[i]!, { shrink: true });
    await image.close();
    vfs.mark('done');
  }
  return { vfs, from };
}

describe('crash consistency of cow resize', () => {
  // QEMU's layouts: create makes them without a backing file. UML layouts need their backing file to
  // have each new size first; packages/cow/test/resize.test.ts covers their arithmetic against a model.
  // An image never written ends right after its bitmap (as QEMU leaves it): growing its bitmap must
  // extend the file before the header says so.
  // Over a longer backing file (written first), a grow must allocate its new sectors as zeros before
  // the header names them: the backing file's bytes must never show in a grown part.
  const cases = [
    ['v2-qemu-lp64', 'writeback', true, false],
    ['v2-qemu-ilp32', 'writethrough', true, false],
    ['v2-qemu-lp64', 'writeback', false, false],
    ['v2-qemu-lp64', 'writethrough', true, true],
  ] as const;
  for (const [variant, cache, written, backed] of cases) {
    it(`${variant} ${cache}${written ? '' : ', never written'}${backed ? ', over a longer backing file' : ''}: every crash state opens at the old or new size and reads only written data or zeros`, async () => {
      const { vfs, from } = await record(variant, cache, written, backed);
      let phase: Phase | undefined;
      let done = false;
      // The smallest size a completed resize has left: data below it survives, data past it is gone.
      let smallest = written ? SIZES[0]! : 0;
      const result = await exploreCrashes({
        log: vfs.log,
        from,
        rng: new Rng(7),
        maxStates: BUDGET,
        statesPerPoint: 64,
        onMark: (label, data) => {
          if (label === 'phase') {
            phase = data as Phase;
            done = false;
          } else if (label === 'done') {
            done = true;
            smallest = Math.min(smallest, phase!.to);
          }
        },
        check: async (crashed) => {
          const image = await openImage(FILE, { vfs: crashed, format: 'cow', readOnly: true });
          try {
            const inProgress = phase !== undefined && !done;
            const allowed = phase === undefined ? [SIZES[0]] : inProgress ? [phase.from, phase.to] : [phase.to];
            if (!allowed.includes(image.size)) return `size ${image.size}, expected ${allowed.join(' or ')}`;
            // A shrink in progress may have dropped its sectors already; nothing else may be lost.
            const mustKeep = inProgress ? Math.min(smallest, phase!.to) : smallest;
            const bytes = await image.read(0, image.size);
            for (let s = 0; s < bytes.length / 512; s++) {
              const sector = bytes.subarray(s * 512, (s + 1) * 512);
              const value = sector[0]!;
              if (!sector.every((b) => b === value)) return `sector ${s} is torn`;
              const at = s * 512;
              if (at < mustKeep && value !== fill(s)) return `sector ${s} lost its data (reads ${value})`;
              if (at >= mustKeep && at < smallest && value !== fill(s) && value !== 0)
                return `sector ${s} reads ${value} (resize ${phase?.from} -> ${phase?.to}${done ? ', done' : ', in progress'}, opened at ${image.size})`;
              if (at >= smallest && value !== 0) return `sector ${s} reads ${value} where no surviving write reaches`;
            }
            const check = await image.check();
            if (check && check.corruptions > 0)
              return `check finds ${check.corruptions} corruptions: ${check.messages.join('; ')}`;
          } finally {
            await image.close();
          }
          return undefined;
        },
      });
      console.log(
        `FIGURE crash-resize ${variant} ${cache}${written ? '' : ' never written'}${backed ? ' backed' : ''}: ${result.points} write points, `
          + `${result.states} crash states`,
      );
      expect(result.violations.map((v) => `${v.point} ${v.label}: ${v.message}`)).toEqual([]);
      expect(result.states).toBeGreaterThan(40);
    });
  }
});
