/**
 * The crash model itself (@blk/faults): what survives a power loss or a
 * killed process, at what granularity, and how crash states are enumerated.
 */
import { describe, expect, it } from 'vitest';
import { MemoryFile } from '@blk/core';
import {
  CrashReplay,
  CrashSimVfs,
  Rng,
  SectorOracle,
  SparseBytes,
  crashStates,
  exploreCrashes,
  hashSector,
} from '@blk/faults';

const bytes = (n: number, v: number) => new Uint8Array(n).fill(v);

async function readAll(
  vfs: {
    open(
      p: string,
      o?: { readOnly?: boolean },
    ): Promise<{ size(): Promise<number>; read(o: number, b: Uint8Array): Promise<number>; close(): Promise<void> }>;
  },
  path: string,
) {
  const s = await vfs.open(path, { readOnly: true });
  const out = new Uint8Array(await s.size());
  await s.read(0, out);
  await s.close();
  return out;
}

describe('CrashSimVfs', () => {
  it("keeps durable states in the core's MemoryFile store, and a crash state shares them until recovery writes", async () => {
    expect(SparseBytes.from(bytes(10, 1))).toBeInstanceOf(MemoryFile);
    const vfs = new CrashSimVfs();
    vfs.put('/f', bytes(64 * 1024, 3));
    const s = await vfs.open('/f');
    await s.write!(0, bytes(512, 9)); // volatile
    await s.close();
    const after = vfs.crash({ mode: 'power-loss', keep: 'none' });
    const file = after.file('/f');
    // A clone of the durable store (no copy of its 64 KiB): 4 KiB chunks, shared.
    expect(file).toBeInstanceOf(SparseBytes);
    expect(file.snapshot()).toEqual(bytes(64 * 1024, 3));
    file.writeAt(0, bytes(1, 7));
    expect(vfs.crash({ mode: 'power-loss', keep: 'none' }).file('/f').snapshot()).toEqual(bytes(64 * 1024, 3));
  });

  it('keeps unflushed writes volatile and flushed writes durable', async () => {
    const vfs = new CrashSimVfs();
    vfs.put('/f', bytes(1024, 1));
    const s = await vfs.open('/f');
    await s.write(0, bytes(512, 2));
    expect((await readAll(vfs, '/f'))[0]).toBe(2); // visible at once
    expect((await readAll(vfs.crash({ mode: 'power-loss' }), '/f'))[0]).toBe(1);
    expect((await readAll(vfs.crash({ mode: 'kill' }), '/f'))[0]).toBe(2);
    await s.flush();
    expect((await readAll(vfs.crash({ mode: 'power-loss' }), '/f'))[0]).toBe(2);
  });

  it('tears multi-sector writes sector by sector, never inside a sector', async () => {
    const vfs = new CrashSimVfs();
    vfs.put('/f', bytes(2048, 1));
    const s = await vfs.open('/f');
    await s.write(256, bytes(1024, 9)); // touches sectors 0, 1, 2
    expect(vfs.model.pending().length).toBe(3);
    const seen = new Set<string>();
    for (const state of crashStates(vfs.model, new Rng(1), 100)) {
      const content = await readAll(state.vfs, '/f');
      const sig = [0, 512, 1024, 1536]
        .map((o) => content.subarray(o, o + 512))
        .map((sec) => (sec.every((b) => b === sec[0]) ? `u${sec[0]}` : `m${sec[0]}-${sec[511]}`))
        .join(',');
      seen.add(sig);
    }
    // 2^3 subsets: every combination of the three sectors, each wholly old or wholly new.
    expect(seen.size).toBe(8);
    for (const sig of seen) expect(sig.endsWith('u1')).toBe(true);
  });

  it('a landed sector carries the page-cache state (earlier writes to the same sector included)', async () => {
    const vfs = new CrashSimVfs();
    vfs.put('/f', bytes(512, 0));
    const s = await vfs.open('/f');
    await s.write(0, bytes(10, 1));
    await s.write(100, bytes(10, 2));
    const only2 = await readAll(vfs.crash({ mode: 'power-loss', keep: new Set([1]) }), '/f');
    expect(only2[0]).toBe(1);
    expect(only2[100]).toBe(2);
  });

  it('flush is per file; truncate and growth are volatile; namespace changes are durable', async () => {
    const vfs = new CrashSimVfs();
    const a = await vfs.open('/a', { create: true });
    const b = await vfs.open('/b', { create: true });
    await a.write(0, bytes(600, 3));
    await b.write(0, bytes(600, 4));
    await a.flush();
    const state = vfs.crash({ mode: 'power-loss' });
    expect((await readAll(state, '/a')).length).toBe(600);
    expect((await readAll(state, '/b')).length).toBe(0);
    await b.truncate(100);
    await vfs.rename('/b', '/c');
    const later = vfs.crash({ mode: 'power-loss' });
    expect(await later.exists('/b')).toBe(false);
    expect((await readAll(later, '/c')).length).toBe(0);
    expect((await readAll(vfs.crash({ mode: 'kill' }), '/c')).length).toBe(100);
  });

  it('replays a log to any position with the same result as live', async () => {
    const vfs = new CrashSimVfs();
    vfs.put('/f', bytes(4096, 0));
    const s = await vfs.open('/f');
    const rng = new Rng(7);
    const snapshots: Uint8Array[] = [];
    for (let i = 0; i < 20; i++) {
      await s.write(rng.int(3000), rng.bytes(rng.range(1, 1000)));
      if (rng.bool(0.3)) await s.flush();
      snapshots.push(await readAll(vfs.crash({ mode: 'power-loss' }), '/f'));
    }
    // Replaying the log event by event reproduces every intermediate state.
    const replay = new CrashReplay(vfs.log);
    let k = 0;
    for (let event = replay.step(); event; event = replay.step()) {
      const next = vfs.log[replay.position];
      if (event.type === 'write' && next?.type !== 'flush') {
        expect(await readAll(replay.model.crash({ mode: 'power-loss' }), '/f')).toEqual(snapshots[k++]);
      } else if (event.type === 'flush') {
        expect(await readAll(replay.model.crash({ mode: 'power-loss' }), '/f')).toEqual(snapshots[k++]);
      }
    }
    expect(k).toBe(snapshots.length);
    replay.seek(vfs.log.length);
    expect(await readAll(replay.model.crash({ mode: 'power-loss' }), '/f')).toEqual(snapshots.at(-1));
  });

  it('enumerates every subset when there are few volatile sectors', async () => {
    const vfs = new CrashSimVfs();
    vfs.put('/f', bytes(4096, 0));
    const s = await vfs.open('/f');
    await s.write(0, bytes(2048, 1)); // 4 sectors -> 16 states
    const labels = [...crashStates(vfs.model, new Rng(1), 64)].map((st) => st.label);
    expect(labels.length).toBe(16);
    expect(labels.filter((l) => l === 'exhaustive').length).toBe(14);
  });
});

describe('CrashSimVfs onEvent: an async hook is awaited, its rejection reaches a caller', () => {
  it('remove and rename wait for the hook and reject with its error (never a floating promise)', async () => {
    const vfs = new CrashSimVfs();
    vfs.put('/a', bytes(512, 1));
    const seen: string[] = [];
    vfs.onEvent = async (event) => {
      await new Promise((resolve) => setTimeout(resolve, 5));
      seen.push(event.type);
      if (event.type === 'rename') throw new Error('hook failed on rename');
    };
    await vfs.remove('/a').catch(() => undefined);
    vfs.put('/b', bytes(512, 2));
    await vfs.settled();
    expect(seen).toEqual(['remove', 'create', 'reset']);
    await expect(vfs.rename('/b', '/c')).rejects.toThrow('hook failed on rename');
    expect(seen).toEqual(['remove', 'create', 'reset', 'rename']);
  });

  it("put, mark and syncAll stay synchronous: their hooks' promises are awaited by the next asynchronous call", async () => {
    const vfs = new CrashSimVfs();
    let release!: () => void;
    const gate = new Promise<void>((resolve) => {
      release = resolve;
    });
    vfs.onEvent = (event) => (event.type === 'mark' ? gate : undefined);
    vfs.put('/f', bytes(512, 1));
    vfs.mark('set-up done');
    let opened = false;
    const opening = vfs.open('/f').then((s) => {
      opened = true;
      return s;
    });
    await new Promise((resolve) => setTimeout(resolve, 5));
    expect(opened).toBe(false);
    release();
    await (await opening).close();
    expect(opened).toBe(true);
  });

  it('a rejected hook of a synchronous call is reported by the next asynchronous call, not left unhandled', async () => {
    const vfs = new CrashSimVfs();
    const unhandled: unknown[] = [];
    const onUnhandled = (reason: unknown) => {
      unhandled.push(reason);
    };
    process.on('unhandledRejection', onUnhandled);
    try {
      vfs.onEvent = async (event) => {
        if (event.type === 'sync-all') throw new Error('hook failed on sync-all');
      };
      vfs.put('/f', bytes(512, 1));
      vfs.syncAll();
      await new Promise((resolve) => setTimeout(resolve, 10));
      await expect(vfs.open('/f')).rejects.toThrow('hook failed on sync-all');
      // Reported once: the next call goes through.
      await (await vfs.open('/f')).close();
    } finally {
      process.off('unhandledRejection', onUnhandled);
    }
    expect(unhandled).toEqual([]);
  });
});

describe('SectorOracle + exploreCrashes on a bare file', () => {
  it('finds a torn "header + data" update that is not crash-safe, and passes a safe one', async () => {
    // Unsafe protocol: data and a commit record in one write pass, no flush between.
    // Safe protocol: data, flush, commit record, flush.
    for (const safe of [false, true]) {
      const vfs = new CrashSimVfs();
      vfs.put('/f', new Uint8Array(4096));
      vfs.syncAll();
      const from = vfs.log.length;
      const s = await vfs.open('/f');
      vfs.mark('write', 1);
      await s.write(1024, bytes(1024, 7));
      if (safe) await s.flush();
      await s.write(0, bytes(512, 1)); // "commit": sector 0 = 1 means sectors 2..3 hold 7s
      await s.flush();
      vfs.mark('done');
      const result = await exploreCrashes({
        log: vfs.log,
        from,
        rng: new Rng(3),
        statesPerPoint: 64,
        check: async (state) => {
          const c = await readAll(state, '/f');
          if (c[0] === 1 && (c[1024] !== 7 || c[1536] !== 7)) return 'commit record without its data';
        },
      });
      if (safe) expect(result.violations).toEqual([]);
      else expect(result.violations.length).toBeGreaterThan(0);
    }
  });

  it('SectorOracle accepts old or new, and only new after a flush', () => {
    const oracle = new SectorOracle(1024, bytes(1024, 1));
    oracle.write(0, bytes(512, 2));
    const old = bytes(1024, 1);
    const neu = bytes(1024, 1).fill(2, 0, 512);
    expect(oracle.check(old)).toBeUndefined();
    expect(oracle.check(neu)).toBeUndefined();
    expect(oracle.check(new Uint8Array(1024))).toBeDefined();
    oracle.flushed();
    expect(oracle.check(old)).toBeDefined();
    expect(oracle.check(neu)).toBeUndefined();
    expect(hashSector(neu, 0, 512)).not.toBe(hashSector(old, 0, 512));
  });
});
