/**
 * Crash safety of commit, rebase and convert: record each command on a
 * CrashSimVfs, crash after every write point (power loss with chosen subsets
 * of volatile sectors, and kill), then check that
 * - nothing that was readable before is lost: the overlay (or the source)
 *   still reads what it read before the command, whenever it opens normally;
 * - a re-run of the command on the crashed files finishes the job, and the
 *   result reads the same.
 *
 * These run the blk command's own jobs (packages/cli/src/jobs/*.ts, exported
 * by @blk/cli): `blk commit`, `blk rebase` and `blk convert` are thin wrappers
 * around `commitImage`, `rebaseImage` and `convertImage`, which do every
 * file-system action through the Vfs they are given. The only difference from
 * the command is a smaller copy unit (CHUNK), so that a 64 KiB image spans
 * several chunks as a real disk spans several MiB.
 */
import { describe, expect, it } from 'vitest';
import { BlockError, createImage, isBlockError, openImage, type MemoryVfs, type Vfs } from '@blk/images';
import { CrashSimVfs, Rng, exploreCrashes, taggedData } from '@blk/faults';
import { envInt } from './fixtures/env.js';
import {
  commitImage,
  commitIntoBase,
  convertImage,
  rebaseImage,
  type ProgressEvent,
} from '../packages/cli/src/index.js';

const SIZE = 64 * 1024;
const STATES = envInt('BLK_CRASH_COMMAND_STATES', 3000);
const CHUNK = 8 * 1024;

// ---- The commands, as blk runs them (on a Vfs) -----------------------------------------------

/** blk commit FILE */
const commit = (vfs: Vfs, file: string) => commitImage(file, { vfs, chunkSize: CHUNK });

/** blk rebase -b NEW FILE (safe mode) */
const rebase = (vfs: Vfs, file: string, newBacking: string) =>
  rebaseImage(file, { vfs, backing: newBacking, chunkSize: CHUNK });

/** blk convert -O cow -o variant=v2-qemu-lp64 SRC DST */
const convert = (vfs: Vfs, src: string, dst: string, variant = 'v2-qemu-lp64') =>
  convertImage(src, dst, { vfs, outputFormat: 'cow', driverOptions: { variant }, chunkSize: CHUNK });

// ---- Fixtures ---------------------------------------------------------------------------------

async function chain(vfs: Vfs, basePath = '/d/base.raw', topPath = '/d/top.cow'): Promise<Uint8Array> {
  const base = taggedData(0, 0, SIZE);
  (vfs as CrashSimVfs).put(basePath, base);
  await createImage(topPath, { vfs, format: 'cow', backing: basePath });
  const top = await openImage(topPath, { vfs, format: 'cow' });
  const rng = new Rng(9);
  for (let i = 1; i <= 12; i++) {
    const offset = rng.int(SIZE / 512) * 512;
    const length = Math.min(SIZE - offset, rng.range(1, 8) * 512);
    await top.write(offset, taggedData(i, offset, length));
  }
  const view = await top.read(0, SIZE);
  await top.close();
  return view;
}

async function view(vfs: Vfs, path: string, readOnly = true): Promise<Uint8Array> {
  const image = await openImage(path, { vfs, format: 'cow', readOnly });
  try {
    return await image.read(0, SIZE);
  } finally {
    await image.close();
  }
}

function same(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

function report(name: string, result: { points: number; states: number }): void {
  console.log(
    `FIGURE crash-commands ${name}: ${result.points} write points, ${result.states} crash states, each re-run to completion`,
  );
}

// ---- Tests -------------------------------------------------------------------------------------

describe("crash safety of blk commit, rebase and convert (the CLI's jobs on a simulated disk)", () => {
  it('commit: a crash anywhere, then a re-run, commits everything and loses nothing', async () => {
    const vfs = new CrashSimVfs();
    const before = await chain(vfs);
    vfs.syncAll();
    const from = vfs.log.length;
    const events: ProgressEvent[] = [];
    const done = await commitImage('/d/top.cow', { vfs, chunkSize: CHUNK, onProgress: (e) => events.push(e) });
    expect(done).toMatchObject({ backingPath: '/d/base.raw', emptied: true, warnings: [] });
    expect(done.copied).toBeGreaterThan(0);
    expect(events[0]).toEqual({ phase: 'start', done: 0, total: done.copied });
    expect(events.at(-1)).toEqual({ phase: 'end', done: done.copied, total: done.copied });
    expect(events.length).toBeGreaterThan(2);
    expect(same(await view(vfs, '/d/top.cow'), before)).toBe(true);
    const result = await exploreCrashes({
      log: vfs.log,
      from,
      rng: new Rng(21),
      statesPerPoint: Math.ceil(STATES / 40),
      maxStates: STATES,
      check: async (state: MemoryVfs) => {
        // Readable before the re-run? When it opens normally, it must read the same.
        try {
          const v = await view(state, '/d/top.cow');
          if (!same(v, before)) return 'overlay opened but reads different data before the re-run';
        } catch (err) {
          if (!(err instanceof BlockError) || err.kind !== 'backing-mismatch')
            return `overlay unreadable: ${String(err)}`;
          // backing-mismatch: the commit-in-progress mark (mtime 0) refuses normal opens until the re-run.
        }
        await commit(state, '/d/top.cow');
        if (!same(await view(state, '/d/top.cow'), before)) return 'after the re-run the overlay reads different data';
        const base = await openImage('/d/base.raw', { vfs: state, format: 'raw', readOnly: true });
        const b = await base.read(0, SIZE);
        await base.close();
        if (!same(b, before)) return 'after the re-run the base does not hold the committed data';
      },
    });
    report('commit', result);
    expect(result.violations.slice(0, 3)).toEqual([]);
  }, 300_000);

  it('commit -b: a crash anywhere in a three-layer commit, then a re-run, leaves the chain reading the same', async () => {
    // base.raw <- mid.cow <- top.cow; commit -b base.raw top.cow writes mid's and top's data into base.raw,
    // then each layer records what lies below it again (the top last: its mark, mtime 0, goes with that).
    const vfs = new CrashSimVfs();
    await chain(vfs, '/d/base.raw', '/d/mid.cow');
    await createImage('/d/top.cow', { vfs, format: 'cow', backing: { path: '/d/mid.cow', format: 'cow' } });
    const probe = { format: 'probe' as const };
    const top = await openImage('/d/top.cow', { vfs, format: 'cow', backing: probe });
    const rng = new Rng(33);
    for (let i = 20; i < 30; i++) {
      const offset = rng.int(SIZE / 512) * 512;
      const length = Math.min(SIZE - offset, rng.range(1, 16) * 512);
      await top.write(offset, taggedData(i, offset, length));
    }
    const before = await top.read(0, SIZE);
    await top.close();
    const chainView = async (state: Vfs) => {
      const image = await openImage('/d/top.cow', { vfs: state, format: 'cow', readOnly: true, backing: probe });
      try {
        return await image.read(0, SIZE);
      } finally {
        await image.close();
      }
    };
    const commitB = (state: Vfs) =>
      commitIntoBase('/d/top.cow', '/d/base.raw', { vfs: state, chunkSize: CHUNK, backingProbe: true });
    vfs.syncAll();
    const from = vfs.log.length;
    const done = await commitB(vfs);
    expect(done).toMatchObject({ backingPath: '/d/base.raw', emptied: false, warnings: [] });
    expect(same(await chainView(vfs), before)).toBe(true);
    const result = await exploreCrashes({
      log: vfs.log,
      from,
      rng: new Rng(34),
      statesPerPoint: Math.ceil(STATES / 40),
      maxStates: STATES,
      check: async (state: MemoryVfs) => {
        try {
          if (!same(await chainView(state), before))
            return 'the chain opened but reads different data before the re-run';
        } catch (err) {
          if (!(err instanceof BlockError) || err.kind !== 'backing-mismatch')
            return `chain unreadable: ${String(err)}`;
        }
        await commitB(state);
        if (!same(await chainView(state), before)) return 'after the re-run the chain reads different data';
        const base = await openImage('/d/base.raw', { vfs: state, format: 'raw', readOnly: true });
        const b = await base.read(0, SIZE);
        await base.close();
        if (!same(b, before)) return "after the re-run the base does not hold the chain's data";
      },
    });
    report('commit -b', result);
    expect(result.violations.slice(0, 3)).toEqual([]);
  }, 300_000);

  /*
   * A v3 header is 9 sectors and UML checks the path with the mtime beside
   * it, so a rewrite with a long backing path cannot be atomic. cow's
   * setBacking writes the sector holding the mtime and size first (flushed),
   * then the rest: every torn state carries the new file's mtime and size.
   * Such an overlay is refused at open (never misread); the re-run of the
   * same safe rebase recognises the torn rewrite by them and finishes it.
   * The long-path cases check that this path really runs.
   */
  const cases = [
    ['short backing paths', '/d', '/d'],
    ['long backing paths sharing their first 700 bytes', `/d/${'x'.repeat(700)}`, `/d/${'x'.repeat(700)}`],
    ['long backing paths that differ from their start', `/a/${'y'.repeat(700)}`, `/b/${'z'.repeat(700)}`],
  ] as const;
  for (const [label, oldDir, dir] of cases) {
    const pathLength = dir.length > 100 ? dir.length : 0;
    it(`rebase (safe): every crash state still reads the same, over the old or the new backing file (${label})`, async () => {
      const vfs = new CrashSimVfs();
      const before = await chain(vfs, `${oldDir}/old.raw`, '/d/top.cow');
      const other = taggedData(0, 0, SIZE);
      other.set(taggedData(99, 8192, 16384), 8192); // the new backing differs in the middle
      vfs.put(`${dir}/new.raw`, other);
      // Give the new backing file another mtime than the old one, as in real life.
      const touch = await vfs.open(`${dir}/new.raw`);
      await touch.write(0, other.subarray(0, 512));
      await touch.close();
      vfs.syncAll();
      const from = vfs.log.length;
      const done = await rebase(vfs, '/d/top.cow', `${dir}/new.raw`);
      expect(done.backingPath).toBe(`${dir}/new.raw`);
      expect(done.copied).toBeGreaterThan(0);
      expect(same(await view(vfs, '/d/top.cow'), before)).toBe(true);
      let repaired = 0;
      const result = await exploreCrashes({
        log: vfs.log,
        from,
        rng: new Rng(22),
        statesPerPoint: Math.ceil(STATES / 30),
        maxStates: STATES,
        check: async (state: MemoryVfs) => {
          let v: Uint8Array;
          try {
            v = await view(state, '/d/top.cow');
          } catch (err) {
            // A torn header rewrite (long paths only): refused, never misread; the re-run of
            // the same safe rebase must finish it.
            const torn =
              pathLength > 0
              && isBlockError(err)
              && (err.kind === 'backing-mismatch' || err.kind === 'backing-missing');
            if (!torn) return `overlay unreadable after the crash: ${String(err)}`;
            await rebase(state, '/d/top.cow', `${dir}/new.raw`);
            v = await view(state, '/d/top.cow');
            repaired++;
          }
          if (!same(v, before)) return 'overlay reads different data after the crash';
          await rebase(state, '/d/top.cow', `${dir}/new.raw`);
          const image = await openImage('/d/top.cow', { vfs: state, format: 'cow', readOnly: true });
          const ok = same(await image.read(0, SIZE), before) && image.info().backing?.stored === `${dir}/new.raw`;
          await image.close();
          if (!ok) return 'the re-run did not finish the rebase with the same contents';
        },
      });
      report(`rebase (${label})`, result);
      for (const v of result.violations.slice(0, 1))
        console.log(
          'VIOLATION',
          JSON.stringify({ ...v, event: v.event && { ...v.event, pieces: undefined } }),
          vfs.log
            .slice(from, v.point + 2)
            .map((e) =>
              e.type === 'write'
                ? `write ${e.inode}@${e.offset}+${e.length}`
                : e.type === 'flush'
                  ? `flush ${e.inode}`
                  : e.type,
            )
            .join(' | '),
        );
      expect(result.violations.slice(0, 3)).toEqual([]);
      // The long paths do tear in some crash states, so the finishing path above really ran.
      console.log(
        `FIGURE crash-commands rebase (${label}): ${repaired} torn header rewrites finished by re-running the rebase`,
      );
      if (pathLength > 0) expect(repaired).toBeGreaterThan(0);
    }, 300_000);
  }

  it('convert -n: the existing target always opens; a re-run makes it read as the source', async () => {
    const vfs = new CrashSimVfs();
    const before = await chain(vfs);
    // The target: a QEMU cow image holding other data, including where the source reads zeros.
    await createImage('/d/old.cow', { vfs, format: 'cow', size: SIZE, driverOptions: { variant: 'v2-qemu-lp64' } });
    const old = await openImage('/d/old.cow', { vfs, format: 'cow' });
    await old.write(0, taggedData(77, 0, SIZE));
    await old.close();
    const intoOld = (state: Vfs) =>
      convertImage('/d/top.cow', '/d/old.cow', {
        vfs: state,
        outputFormat: 'cow',
        existingTarget: true,
        chunkSize: CHUNK,
      });
    vfs.syncAll();
    const from = vfs.log.length;
    const done = await intoOld(vfs);
    expect(done.tempPath).toBeUndefined();
    expect(same(await view(vfs, '/d/old.cow'), before)).toBe(true);
    const result = await exploreCrashes({
      log: vfs.log,
      from,
      rng: new Rng(24),
      statesPerPoint: Math.ceil(STATES / 30),
      maxStates: STATES,
      check: async (state: MemoryVfs) => {
        try {
          await view(state, '/d/old.cow');
        } catch (err) {
          return `target unreadable after the crash: ${String(err)}`;
        }
        if (!same(await view(state, '/d/top.cow'), before)) return 'the source changed';
        await intoOld(state);
        if (!same(await view(state, '/d/old.cow'), before)) return 'after the re-run the target reads different data';
      },
    });
    report('convert -n', result);
    expect(result.violations.slice(0, 3)).toEqual([]);
  }, 300_000);

  it('convert: the source is never touched; the target is absent or complete; a re-run finishes', async () => {
    const vfs = new CrashSimVfs();
    const before = await chain(vfs);
    vfs.syncAll();
    const from = vfs.log.length;
    const done = await convert(vfs, '/d/top.cow', '/d/out.cow');
    expect(done.tempPath).toMatch(/^\/d\/out\.cow\.tmp-[0-9a-f]{8}$/);
    expect(await vfs.exists(done.tempPath)).toBe(false);
    expect(same(await view(vfs, '/d/out.cow'), before)).toBe(true);
    const result = await exploreCrashes({
      log: vfs.log,
      from,
      rng: new Rng(23),
      statesPerPoint: Math.ceil(STATES / 30),
      maxStates: STATES,
      check: async (state: MemoryVfs) => {
        if (!same(await view(state, '/d/top.cow'), before)) return 'the source changed';
        if (await state.exists('/d/out.cow')) {
          if (!same(await view(state, '/d/out.cow'), before))
            return 'a target exists under its final name but is incomplete';
        }
        // A crash can leave the temporary file of the crashed run behind (as a kill -9 does); the re-run
        // writes under a name of its own and leaves none.
        const again = await convert(state, '/d/top.cow', '/d/out.cow');
        if (await state.exists(again.tempPath)) return 'the re-run left its temporary file behind';
        if (!same(await view(state, '/d/out.cow'), before)) return 'the re-run did not produce a complete target';
      },
    });
    report('convert', result);
    expect(result.violations.slice(0, 3)).toEqual([]);
  }, 300_000);
});
