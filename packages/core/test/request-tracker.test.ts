import { describe, expect, it } from 'vitest';
import { RequestTracker } from '@blk/core';
import { deferred, settle } from './fixtures/helpers.js';

/** Starts a tracked request whose work logs its start and waits for `gate`. */
function held(tracker: RequestTracker, log: string[], name: string, start: number, end: number, write: boolean) {
  const gate = deferred();
  const done = tracker.run(start, end, write, async () => {
    log.push(`${name} start`);
    await gate.promise;
    log.push(`${name} end`);
    return name;
  });
  return { gate, done };
}

describe('RequestTracker', () => {
  it('runs an overlapping write only after the earlier write finished', async () => {
    const tracker = new RequestTracker();
    const log: string[] = [];
    const w1 = held(tracker, log, 'w1', 0, 10, true);
    const w2 = held(tracker, log, 'w2', 5, 15, true);
    await settle();
    expect(log).toEqual(['w1 start']);
    w2.gate.resolve();
    await settle();
    expect(log).toEqual(['w1 start']);
    w1.gate.resolve();
    await Promise.all([w1.done, w2.done]);
    expect(log).toEqual(['w1 start', 'w1 end', 'w2 start', 'w2 end']);
  });

  it('keeps issue order along a chain of overlapping writes', async () => {
    const tracker = new RequestTracker();
    const order: number[] = [];
    const requests = [0, 1, 2, 3, 4].map((i) =>
      tracker.run(i * 4, i * 4 + 8, true, async () => {
        // Later requests would finish sooner if they were allowed to start.
        await new Promise((r) => setTimeout(r, (5 - i) * 2));
        order.push(i);
      }),
    );
    await Promise.all(requests);
    expect(order).toEqual([0, 1, 2, 3, 4]);
  });

  it('runs writes to adjacent, non-overlapping ranges in parallel ([start, end) is half-open)', async () => {
    const tracker = new RequestTracker();
    const log: string[] = [];
    const w1 = held(tracker, log, 'w1', 0, 10, true);
    const w2 = held(tracker, log, 'w2', 10, 20, true);
    await settle();
    expect(log).toEqual(['w1 start', 'w2 start']);
    expect(tracker.size).toBe(2);
    w2.gate.resolve();
    await w2.done;
    expect(log).toEqual(['w1 start', 'w2 start', 'w2 end']);
    w1.gate.resolve();
    await w1.done;
  });

  it('lets overlapping reads run at the same time', async () => {
    const tracker = new RequestTracker();
    const log: string[] = [];
    const r1 = held(tracker, log, 'r1', 0, 100, false);
    const r2 = held(tracker, log, 'r2', 50, 60, false);
    await settle();
    expect(log).toEqual(['r1 start', 'r2 start']);
    r1.gate.resolve();
    r2.gate.resolve();
    await Promise.all([r1.done, r2.done]);
  });

  it('makes a read wait for an earlier overlapping write, and a write for an earlier overlapping read', async () => {
    const tracker = new RequestTracker();
    const log: string[] = [];
    const w1 = held(tracker, log, 'w1', 0, 10, true);
    const r2 = held(tracker, log, 'r2', 9, 10, false);
    const w3 = held(tracker, log, 'w3', 0, 1, true);
    await settle();
    expect(log).toEqual(['w1 start']);
    w1.gate.resolve();
    await w1.done;
    await settle();
    // Both waited for w1 only; w3 [0,1) and r2 [9,10) are disjoint, so they now run together.
    expect(log).toEqual(['w1 start', 'w1 end', 'r2 start', 'w3 start']);
    r2.gate.resolve();
    w3.gate.resolve();
    await Promise.all([r2.done, w3.done]);
  });

  it('does not let a read overtake a write that waits for an earlier read', async () => {
    const tracker = new RequestTracker();
    const log: string[] = [];
    const r1 = held(tracker, log, 'r1', 0, 10, false);
    const w2 = held(tracker, log, 'w2', 0, 10, true);
    const r3 = held(tracker, log, 'r3', 0, 10, false);
    await settle();
    // r3 overlaps the queued write w2, so it sees w2's data: it waits.
    expect(log).toEqual(['r1 start']);
    r1.gate.resolve();
    w2.gate.resolve();
    r3.gate.resolve();
    await Promise.all([r1.done, w2.done, r3.done]);
    expect(log).toEqual(['r1 start', 'r1 end', 'w2 start', 'w2 end', 'r3 start', 'r3 end']);
  });

  it('releases the range of a request that fails and passes its error on', async () => {
    const tracker = new RequestTracker();
    const failed = tracker.run(0, 10, true, async () => {
      throw new Error('EIO');
    });
    const next = tracker.run(0, 10, true, async () => 'ran');
    await expect(failed).rejects.toThrow('EIO');
    await expect(next).resolves.toBe('ran');
    expect(tracker.size).toBe(0);
  });

  it('drains only the requests in flight when drain() is called', async () => {
    const tracker = new RequestTracker();
    const log: string[] = [];
    const w1 = held(tracker, log, 'w1', 0, 10, true);
    let drained = false;
    const drain = tracker.drain().then(() => {
      drained = true;
    });
    const later = held(tracker, log, 'later', 100, 110, true);
    w1.gate.resolve();
    await drain;
    expect(drained).toBe(true);
    expect(log).toEqual(['w1 start', 'later start', 'w1 end']);
    later.gate.resolve();
    await later.done;
  });

  it('finds overlaps across its 64 KiB buckets: edges, requests over many buckets, wide ones', async () => {
    const tracker = new RequestTracker();
    const log: string[] = [];
    const KiB = 1024;
    const a = held(tracker, log, 'a', 64 * KiB - 512, 64 * KiB + 512, true); // two buckets
    const b = held(tracker, log, 'b', 64 * KiB, 64 * KiB + 512, true); // overlaps a in its second bucket
    const c = held(tracker, log, 'c', 128 * KiB, 129 * KiB, true); // next bucket: free
    const wide = held(tracker, log, 'wide', 512 * KiB, 64 * 1024 * KiB, true); // over 16 buckets
    const d = held(tracker, log, 'd', 40 * 1024 * KiB, 40 * 1024 * KiB + 4096, false); // inside wide
    const e = held(tracker, log, 'e', 0, 1024 * 1024 * KiB, true); // wide, overlaps all of them
    await settle();
    expect(log).toEqual(['a start', 'c start', 'wide start']);
    a.gate.resolve();
    c.gate.resolve();
    await settle();
    expect(log).toEqual(['a start', 'c start', 'wide start', 'a end', 'c end', 'b start']);
    wide.gate.resolve();
    await settle();
    expect(log.slice(-2)).toEqual(['wide end', 'd start']);
    b.gate.resolve();
    d.gate.resolve();
    await settle();
    expect(log.slice(-1)).toEqual(['e start']);
    e.gate.resolve();
    await Promise.all([a.done, b.done, c.done, wide.done, d.done, e.done]);
    expect(tracker.size).toBe(0);
  });

  it('runs thousands of disjoint requests in flight at once, and a later overlapping one waits for its own', async () => {
    const tracker = new RequestTracker();
    const gates = Array.from({ length: 5000 }, (_, i) => {
      const log: string[] = [];
      return held(tracker, log, String(i), i * 7919 * 4096, i * 7919 * 4096 + 4096, true);
    });
    await settle();
    expect(tracker.size).toBe(5000);
    const log: string[] = [];
    const late = held(tracker, log, 'late', 4321 * 7919 * 4096 + 512, 4321 * 7919 * 4096 + 1024, true);
    await settle();
    expect(log).toEqual([]);
    gates[4321]!.gate.resolve();
    await gates[4321]!.done;
    await settle();
    expect(log).toEqual(['late start']);
    late.gate.resolve();
    for (const g of gates) g.gate.resolve();
    await Promise.all([late.done, ...gates.map((g) => g.done)]);
    expect(tracker.size).toBe(0);
  });
});
