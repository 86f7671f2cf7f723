/**
 * Fault injection (SQLite's test VFS style): every storage and vfs call of a
 * workload is failed in turn — EIO, ENOSPC, a short read, a short write —
 * and after each run we check that
 * - the failure reached the caller as a typed BlockError (kind 'io' with the
 *   injected errno code for EIO/ENOSPC),
 * - no operation hung (every call settles within a time bound) and no
 *   storage handle leaked (open handles are 0 after close, even a failed one),
 * - once the device is healthy again the image opens, a retried flush
 *   succeeds, and every sector reads old-or-new for writes in flight and the
 *   flushed value for everything acknowledged by a completed flush().
 *
 * Short reads are the one fault the image cannot always tell from a file
 * that ends early; they must still give a typed error or correct data.
 */
import { appendFileSync, mkdirSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import {
  BlockError,
  MemoryVfs,
  createImage,
  openImage,
  type BackingReference,
  type CacheMode,
  type Image,
  type Vfs,
} from '@blk/images';
import { FaultyVfs, Rng, SectorOracle, taggedData, withTimeout, yielder, type FaultKind } from '@blk/faults';
import { envInt } from './fixtures/env.js';

const SIZE = 64 * 1024;
const OP_TIMEOUT = 5_000;
/** Calls to fail per workload; BLK_FAULT_POINTS=0 means every call. */
const MAX_POINTS = envInt('BLK_FAULT_POINTS', 0);
/** Workload seeds per spec (BLK_FAULT_SEEDS, default 3). */
const SEEDS = Math.max(1, envInt('BLK_FAULT_SEEDS', 3));
const backingFormat = (ref: BackingReference) => (ref.path.endsWith('.raw') ? 'raw' : 'cow');

function recordFigure(name: string, value: unknown): void {
  try {
    mkdirSync('.tmp', { recursive: true });
    appendFileSync('.tmp/figures.jsonl', `${JSON.stringify({ name, at: new Date().toISOString(), value })}\n`);
  } catch {
    // a convenience only
  }
}

interface Spec {
  name: string;
  format: 'cow' | 'raw';
  variant?: string;
  cache: CacheMode;
  seed: number;
  ops: number;
  /** Run the ops in batches of concurrent requests. */
  concurrent?: boolean;
  /** Create the overlay inside the faulted run (faults hit create too). */
  createInRun?: boolean;
}

const SPECS: Spec[] = [
  { name: 'cow v3 writeback', format: 'cow', variant: 'v3', cache: 'writeback', seed: 1, ops: 24, createInRun: true },
  { name: 'cow v3 writethrough', format: 'cow', variant: 'v3', cache: 'writethrough', seed: 2, ops: 16 },
  { name: 'cow v2-qemu-lp64 writeback', format: 'cow', variant: 'v2-qemu-lp64', cache: 'writeback', seed: 3, ops: 16 },
  {
    name: 'cow v3 writeback, concurrent requests',
    format: 'cow',
    variant: 'v3',
    cache: 'writeback',
    seed: 4,
    ops: 24,
    concurrent: true,
  },
  { name: 'raw', format: 'raw', cache: 'writeback', seed: 5, ops: 16 },
];

type Op =
  | { kind: 'write'; offset: number; data: Uint8Array }
  | { kind: 'read'; offset: number; length: number }
  | { kind: 'discard'; offset: number; length: number }
  | { kind: 'flush' }
  | { kind: 'reopen' };

function makeOps(spec: Spec): Op[] {
  const rng = new Rng(spec.seed);
  const ops: Op[] = [];
  for (let i = 0; i < spec.ops; i++) {
    const r = rng.float();
    if (r < 0.55) {
      const offset = rng.bool(0.5) ? rng.int(SIZE / 512) * 512 : rng.int(SIZE - 1);
      const length = Math.min(SIZE - offset, rng.range(1, 3000));
      ops.push({ kind: 'write', offset, data: taggedData(i + 1, offset, length) });
    } else if (r < 0.7) {
      const offset = rng.int(SIZE - 1);
      ops.push({ kind: 'read', offset, length: Math.min(SIZE - offset, rng.range(1, 4000)) });
    } else if (r < 0.78 && spec.format === 'cow') {
      const offset = rng.int(SIZE / 512) * 512;
      ops.push({ kind: 'discard', offset, length: Math.min(SIZE - offset, rng.range(1, 8) * 512) });
    } else if (r < 0.9) {
      ops.push({ kind: 'flush' });
    } else {
      ops.push({ kind: 'reopen' });
    }
  }
  ops.push({ kind: 'flush' });
  return ops;
}

/** A fresh file system with the base image (and the overlay, unless the run creates it). */
async function setup(spec: Spec): Promise<MemoryVfs> {
  const vfs = new MemoryVfs('/');
  if (spec.format === 'raw') {
    vfs.put('/d/disk.raw', taggedData(0, 0, SIZE));
  } else {
    vfs.put('/d/base.raw', taggedData(0, 0, SIZE));
    if (!spec.createInRun) {
      await createImage('/d/top.cow', {
        vfs,
        format: 'cow',
        backing: '/d/base.raw',
        driverOptions: { variant: spec.variant },
      });
    }
  }
  return vfs;
}

const topOf = (spec: Spec) => (spec.format === 'raw' ? '/d/disk.raw' : '/d/top.cow');

function open(vfs: Vfs, spec: Spec, readOnly = false): Promise<Image> {
  return openImage(topOf(spec), {
    vfs,
    format: spec.format,
    cache: spec.cache,
    readOnly,
    backing: { format: backingFormat },
  });
}

interface RunResult {
  /** Error thrown by the first failing operation, if any. */
  error?: unknown;
  /** A problem found (typed-error, hang, leak, consistency). */
  problem?: string;
}

const timed = <T>(p: Promise<T>, label: string) => withTimeout(p, OP_TIMEOUT, label);

/** Runs the workload over `faulty`; checks the error, leaks, and consistency after recovery. */
async function run(
  spec: Spec,
  ops: Op[],
  inner: MemoryVfs,
  faulty: FaultyVfs,
  fault: FaultKind | undefined,
): Promise<RunResult> {
  const oracle = new SectorOracle(SIZE, taggedData(0, 0, SIZE));
  const result: RunResult = {};
  let image: Image | undefined;
  const fail = (err: unknown) => {
    result.error ??= err;
  };
  const typedOk = (err: unknown): string | undefined => {
    if (err instanceof WrongData) return err.message;
    if (!(err instanceof BlockError))
      return `untyped error ${String(err)}${(err as Error)?.stack ? `\n${(err as Error).stack}` : ''}`;
    if ((fault === 'EIO' || fault === 'ENOSPC') && !(err.kind === 'io' && err.code === fault)) {
      return `${fault} reached the caller as ${err.kind}/${err.code}: ${err.message}`;
    }
    return undefined;
  };
  try {
    if (spec.createInRun) {
      await timed(
        createImage(topOf(spec), {
          vfs: faulty,
          format: 'cow',
          backing: '/d/base.raw',
          driverOptions: { variant: spec.variant },
        }),
        'create',
      );
    }
    image = await timed(open(faulty, spec), 'open');
    const doOp = async (op: Op): Promise<void> => {
      const img = image!;
      if (op.kind === 'write' || op.kind === 'discard') {
        const length = op.kind === 'write' ? op.data.length : op.length;
        const before = oracle.current.slice(op.offset, op.offset + length);
        const data = op.kind === 'write' ? op.data : before.slice().fill(0);
        if (op.kind === 'discard') data.set(taggedData(0, op.offset, length)); // reads fall through to the base
        oracle.write(op.offset, data);
        try {
          await timed(op.kind === 'write' ? img.write(op.offset, op.data) : img.discard(op.offset, op.length), op.kind);
        } catch (err) {
          oracle.writeFailed(op.offset, before);
          throw err;
        }
      } else if (op.kind === 'read') {
        const got = await timed(img.read(op.offset, op.length), 'read');
        // A read that succeeds must return what a reader sees (a short read must not turn into zeros).
        const want = oracle.current.subarray(op.offset, op.offset + op.length);
        if (!equal(got, want)) throw new WrongData(`read [${op.offset}, +${op.length}) succeeded with wrong data`);
      } else if (op.kind === 'flush') {
        await timed(img.flush(), 'flush');
        oracle.flushed();
      } else {
        image = undefined;
        await timed(img.close(), 'close');
        oracle.flushed();
        image = await timed(open(faulty, spec), 'open');
      }
    };
    if (spec.concurrent) {
      // Batches of requests in flight together; each settles, the first failure is reported.
      for (let i = 0; i < ops.length; i += 4) {
        const batch = ops.slice(i, i + 4);
        // Flushes and reads go after the batch's writes, so the oracle sees a serial order.
        const writes = batch.filter((o) => o.kind === 'write' || o.kind === 'discard');
        const rest = batch.filter((o) => !(o.kind === 'write' || o.kind === 'discard'));
        void rest;
        const disjoint = noOverlap(writes);
        const settled = disjoint ? await Promise.allSettled(writes.map(doOp)) : await serial(writes, doOp);
        const failed = settled.find((s) => s.status === 'rejected');
        if (failed) throw (failed as PromiseRejectedResult).reason;
        for (const op of rest) await doOp(op);
      }
    } else {
      for (const op of ops) await doOp(op);
    }
  } catch (err) {
    fail(err);
  }
  if (result.error !== undefined) {
    const why = typedOk(result.error);
    if (why) return { ...result, problem: why };
  }
  // Recovery: the device is healthy again; a retried flush must succeed and lose nothing.
  faulty.disarm();
  if (image) {
    try {
      await timed(image.flush(), 'retry flush');
      oracle.flushed();
    } catch (err) {
      return { ...result, problem: `flush after recovery failed: ${String(err)}` };
    }
    try {
      await timed(image.close(), 'close');
    } catch (err) {
      return { ...result, problem: `close after recovery failed: ${String(err)}` };
    }
  }
  if (faulty.openHandles !== 0) return { ...result, problem: `${faulty.openHandles} storage handle(s) leaked` };
  // Reopen from the healthy file system and check every sector.
  if (spec.createInRun && !(await inner.exists(topOf(spec)))) return result; // create failed and cleaned up
  let again: Image;
  try {
    again = await timed(open(inner, spec, true), 'reopen');
  } catch (err) {
    if (spec.createInRun && result.error !== undefined && !image) return result; // a half-created image, refused with a typed error
    return { ...result, problem: `reopen failed: ${String(err)}` };
  }
  const content = await again.read(0, SIZE);
  await again.close();
  const bad = oracle.check(content);
  if (bad)
    return {
      ...result,
      problem: `sector ${bad.sector} is not the ${bad.expected === 'durable' ? 'flushed' : 'old or new'} value`,
    };
  return result;
}

class WrongData extends Error {}

function equal(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

function noOverlap(ops: Op[]): boolean {
  const ranges = ops.map((o) =>
    o.kind === 'write'
      ? [o.offset, o.offset + o.data.length]
      : o.kind === 'discard'
        ? [o.offset, o.offset + o.length]
        : [0, 0],
  );
  // Sector-aligned ranges, since the image serialises per sector.
  const al = ranges.map(([a, b]) => [Math.floor(a! / 512), Math.ceil(b! / 512)]);
  for (let i = 0; i < al.length; i++)
    for (let j = i + 1; j < al.length; j++) if (al[i]![0]! < al[j]![1]! && al[j]![0]! < al[i]![1]!) return false;
  return true;
}

async function serial(ops: Op[], f: (op: Op) => Promise<void>): Promise<PromiseSettledResult<void>[]> {
  const out: PromiseSettledResult<void>[] = [];
  for (const op of ops) {
    try {
      await f(op);
      out.push({ status: 'fulfilled', value: undefined });
    } catch (reason) {
      out.push({ status: 'rejected', reason });
      break;
    }
  }
  return out;
}

const totals = { runs: 0, injected: 0, byFault: {} as Record<string, number>, errorsSeen: 0 };

async function faultEveryCall(spec0: Spec, faults: FaultKind[], sticky = false): Promise<string[]> {
  const problems: string[] = [];
  for (let k = 0; k < SEEDS; k++) {
    const spec = { ...spec0, seed: spec0.seed + 1000 * k };
    problems.push(...(await faultOneSeed(spec, faults, sticky)).map((p) => `seed ${spec.seed} ${p}`));
  }
  return problems;
}

async function faultOneSeed(spec: Spec, faults: FaultKind[], sticky: boolean): Promise<string[]> {
  const ops = makeOps(spec);
  // Dry run: count calls, and check the fault-free workload passes.
  const inner0 = await setup(spec);
  const dry = new FaultyVfs(inner0);
  const clean = await run(spec, ops, inner0, dry, undefined);
  expect(clean.problem).toBeUndefined();
  expect(clean.error).toBeUndefined();
  const calls = dry.totalCalls;
  const points = MAX_POINTS > 0 ? Math.min(calls, MAX_POINTS) : calls;
  const problems: string[] = [];
  let injected = 0;
  const breathe = yielder();
  for (let k = 0; k < points; k++) {
    await breathe();
    const nth = MAX_POINTS > 0 ? 1 + Math.floor((k * calls) / points) : k + 1;
    for (const fault of faults) {
      const inner = await setup(spec);
      // Sticky: every call from the nth on fails (a disk that filled up), until the device recovers.
      const faulty = new FaultyVfs(inner, [{ call: 'any', nth, fault, times: sticky ? Infinity : 1 }], {
        seed: nth * 31 + fault.length,
      });
      const r = await run(spec, ops, inner, faulty, fault);
      totals.runs++;
      if (faulty.injected.length === 0) continue;
      injected++;
      totals.byFault[fault] = (totals.byFault[fault] ?? 0) + 1;
      const inj = faulty.injected[0]!;
      if (r.error !== undefined) totals.errorsSeen++;
      if (r.problem)
        problems.push(
          `call #${nth} (${inj.call} ${inj.path}${inj.offset !== undefined ? ` @${inj.offset}` : ''}) ${fault}: ${r.problem}`,
        );
    }
  }
  totals.injected += injected;
  console.log(
    `FIGURE faults ${spec.name}${sticky ? ' (sticky)' : ''} seed ${spec.seed} [${faults.join(', ')}]: ${calls} calls per run, ${injected} faults injected, ${problems.length} problems`,
  );
  return problems;
}

describe('fault injection: fail every call of a workload in turn', () => {
  for (const spec of SPECS) {
    it(`${spec.name}: EIO, ENOSPC and short writes at every call`, async () => {
      const problems = await faultEveryCall(spec, ['EIO', 'ENOSPC', 'short-write']);
      expect(problems.slice(0, 8)).toEqual([]);
    }, 600_000);
  }

  it('cow v3 writeback: a disk that stays full (ENOSPC from the nth call on) until recovery', async () => {
    const problems = await faultEveryCall(SPECS[0]!, ['ENOSPC'], true);
    expect(problems.slice(0, 8)).toEqual([]);
  }, 600_000);

  /*
   * Short reads (a read that returns fewer bytes than asked inside the file).
   * KNOWN BUG (reported, core): readZeroFilled() zero-fills any short read as
   * if it were the end of the file, so a short read inside the file turns
   * into zeros: wrong data from read(), and read-modify-write of a partial
   * sector writes those zeros back (silent corruption of bytes the caller
   * never wrote). These tests fail until readZeroFilled (and the registry's
   * probe read) check storage.size() and throw 'io' on a short read that is
   * not at the end of the file.
   */
  for (const spec of SPECS) {
    it(`${spec.name}: short reads at every call give a typed error or correct data`, async () => {
      const problems = await faultEveryCall(spec, ['short-read']);
      expect(problems.slice(0, 8)).toEqual([]);
    }, 600_000);
  }

  it('totals', () => {
    console.log(
      `FIGURE faults total: ${totals.runs} runs, ${totals.injected} faults injected (${Object.entries(totals.byFault)
        .map(([k, v]) => `${k} ${v}`)
        .join(', ')}), ${totals.errorsSeen} surfaced as typed errors`,
    );
    recordFigure('faults', totals);
    expect(totals.injected).toBeGreaterThan(100);
  });
});
