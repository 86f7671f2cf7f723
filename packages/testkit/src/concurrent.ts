import fc from 'fast-check';
import type { Image } from '@blk/core/portable';
import { fillKindArb, rangeArb, seedArb, type ByteRange } from './arbitraries.js';
import { assertBytesEqual } from './compare.js';
import { checkContent, checkMap, type ImageModel, type InvariantOptions } from './invariants.js';
import { assertProperty, fcParameters, type ProofOptions } from './options.js';
import { pattern, type FillKind } from './pattern.js';
import { checkOpened, rangeConstraints, setUp } from './read-after-write.js';
import { ScheduledVfs } from './scheduled-storage.js';
import type { TestSubject } from './subject.js';

/** One request of a concurrent batch. `gap`: scheduler steps to let run before issuing the next request. */
export type ConcurrentOp =
  | ({ kind: 'write'; seed: number; fill: FillKind; gap: number } & ByteRange)
  | ({ kind: 'read'; gap: number } & ByteRange)
  | ({ kind: 'status'; gap: number } & ByteRange)
  | { kind: 'flush'; gap: number };

export interface ConcurrentOptions extends ProofOptions {
  /** Hold back each storage operation's completion too (see `ScheduledStorageOptions`). Default true. */
  delayCompletion?: boolean;
}

function describe(op: ConcurrentOp): string {
  switch (op.kind) {
    case 'write':
      return `write(${op.offset}, +${op.length}, ${op.fill}#${op.seed})`;
    case 'read':
      return `read(${op.offset}, +${op.length})`;
    case 'status':
      return `chainStatus(${op.offset}, +${op.length})`;
    case 'flush':
      return 'flush()';
  }
}

/**
 * Resolves with `task` once the scheduler has run everything it needs;
 * rejects when the task can no longer finish: nothing is scheduled and the
 * task has not settled for a while (a request waits on something that never
 * comes: a lost wake-up in a driver or in the core).
 */
export async function drive<T>(s: fc.Scheduler, task: Promise<T>, what: string): Promise<T> {
  let settled = false;
  task.then(
    () => {
      settled = true;
    },
    () => {
      settled = true;
    },
  );
  let timer: ReturnType<typeof setTimeout> | undefined;
  const watchdog = new Promise<never>((_, reject) => {
    let idleChecks = 0;
    const check = () => {
      if (settled) return;
      idleChecks = s.count() === 0 ? idleChecks + 1 : 0;
      if (idleChecks >= 20) {
        reject(
          new Error(
            `${what}: deadlock: requests are pending with no storage operation scheduled`
              + `\nscheduler:\n${String(s)}`,
          ),
        );
        return;
      }
      timer = setTimeout(check, 25);
    };
    timer = setTimeout(check, 25);
  });
  try {
    return await Promise.race([s.waitFor(task), watchdog]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Ranges for a concurrent batch: a quarter anywhere (`rangeArb`), the rest
 * short and packed around one hot spot per run (slots of an alignment, ±3
 * bytes), so that many requests are neighbours that do not overlap: they run
 * in parallel and share whatever metadata covers them (bitmap bytes, table
 * entries, the file's end), which is where drivers race.
 */
function concurrentRangeArb(subject: TestSubject, options: ConcurrentOptions): fc.Arbitrary<ByteRange[]> {
  const c = rangeConstraints(subject, options);
  const alignments = c.alignments.filter((a) => a > 0 && a <= c.size);
  const anywhere = rangeArb(c);
  const count = fc.integer({ min: 1, max: options.maxOps ?? 24 });
  if (alignments.length === 0) return fc.array(anywhere, { minLength: 1, maxLength: options.maxOps ?? 24 });
  return fc
    .tuple(fc.constantFrom(...alignments), fc.integer({ min: 0, max: c.size - 1 }), count)
    .chain(([a, hot, n]) => {
      const base = hot - (hot % a);
      const near = fc
        .tuple(
          fc.integer({ min: 0, max: 7 }),
          fc.integer({ min: -3, max: 3 }),
          fc.oneof(
            fc.integer({ min: 1, max: 16 }),
            fc.integer({ min: 1, max: 2 }).map((k) => k * a),
            fc.integer({ min: 1, max: 2 * a }),
          ),
        )
        .map(([slot, d, length]): ByteRange => {
          const offset = Math.max(0, Math.min(c.size - 1, base + slot * a + d));
          return { offset, length: Math.max(1, Math.min(length, c.maxLength, c.size - offset)) };
        });
      return fc.array(fc.oneof({ arbitrary: anywhere, weight: 1 }, { arbitrary: near, weight: 3 }), {
        minLength: n,
        maxLength: n,
      });
    });
}

function opsArb(subject: TestSubject, options: ConcurrentOptions): fc.Arbitrary<ConcurrentOp[]> {
  const gap = fc.oneof(
    { arbitrary: fc.constant(0), weight: 4 },
    { arbitrary: fc.integer({ min: 1, max: 4 }), weight: 1 },
  );
  const kind = fc.tuple(
    fc.oneof(
      { arbitrary: fc.constant('write' as const), weight: 6 },
      { arbitrary: fc.constant('read' as const), weight: 3 },
      { arbitrary: fc.constant('status' as const), weight: 1 },
      { arbitrary: fc.constant('flush' as const), weight: 1 },
    ),
    seedArb(),
    fillKindArb(),
    gap,
  );
  return concurrentRangeArb(subject, options).chain((ranges) =>
    fc.tuple(...ranges.map(() => kind)).map((kinds) =>
      kinds.map(([k, seed, fill, g], i): ConcurrentOp => {
        const r = ranges[i]!;
        if (k === 'write') return { kind: 'write', offset: r.offset, length: r.length, seed, fill, gap: g };
        if (k === 'flush') return { kind: 'flush', gap: g };
        return { kind: k, offset: r.offset, length: r.length, gap: g };
      }),
    ),
  );
}

/**
 * The concurrency proof. Each run issues a batch of writes, reads, status
 * queries and flushes without awaiting any of them, over storage whose every
 * operation completes when a `fc.scheduler()` decides (`ScheduledVfs`), so
 * the driver's own I/O really interleaves. Then:
 *
 * - every read returns the model as it stood when the read was issued (the
 *   core serialises overlapping requests in issue order, so that is the only
 *   correct answer; non-overlapping requests commute);
 * - no request fails and none hangs;
 * - the content equals the model with every write applied in issue order,
 *   before close, and after close and reopen (nothing lost in metadata that
 *   raced); `map()` stays sane.
 */
export async function checkConcurrentWrites(subject: TestSubject, options: ConcurrentOptions = {}): Promise<void> {
  const invariants: InvariantOptions = { writesAllocate: options.writesAllocate ?? true };
  const params = fcParameters(options);
  await assertProperty(
    `${subject.name}: concurrent requests`,
    fc.asyncProperty(fc.scheduler(), seedArb(), opsArb(subject, options), async (s, seed, ops) => {
      const { vfs, instance } = await setUp(subject, seed);
      const model: ImageModel = { content: instance.initial.slice(), written: new Uint8Array(subject.size) };
      const scheduledVfs = new ScheduledVfs(vfs, s, { delayCompletion: options.delayCompletion ?? true });
      let image: Image | undefined;
      try {
        image = checkOpened(
          subject,
          await drive(s, instance.open({ vfs: scheduledVfs, readOnly: false }), 'open'),
          false,
        );
        const failures: string[] = [];
        const pending: Array<Promise<void>> = [];
        for (const [index, op] of ops.entries()) {
          const what = `#${index} ${describe(op)}`;
          let request: Promise<unknown>;
          if (op.kind === 'write') {
            const data = pattern(op.length, op.seed, op.fill);
            request = image.write(op.offset, data);
            model.content.set(data, op.offset);
            model.written.fill(1, op.offset, op.offset + op.length);
          } else if (op.kind === 'read') {
            const expected = model.content.slice(op.offset, op.offset + op.length);
            request = image.read(op.offset, op.length).then((got) => {
              assertBytesEqual(got, expected, `${what} (expected the content as of its issue)`, op.offset);
            });
          } else if (op.kind === 'status') {
            const { offset, length } = op;
            const current = image;
            request = current.chainStatus(offset, length).then((st) => {
              if (!(st.length > 0 && st.length <= length)) throw new Error(`returned length ${st.length}`);
              const layers = current.chain().length;
              if (st.depth !== undefined && !(st.depth >= 0 && st.depth < layers))
                throw new Error(`returned depth ${st.depth}`);
            });
          } else {
            request = image.flush();
          }
          pending.push(
            request.then(
              () => undefined,
              (err: unknown) => {
                failures.push(`${what} failed: ${err instanceof Error ? err.message : String(err)}`);
              },
            ),
          );
          for (let step = 0; step < op.gap && s.count() > 0; step++) await s.waitNext(1);
        }
        await drive(s, Promise.all(pending), `${subject.name}: batch`);
        if (failures.length > 0) throw new Error(`${subject.name}: ${failures.join('\n')}`);
        await drive(s, checkContent(image, model, 'content after the batch, before close'), 'full read');
        await drive(s, image.close(), 'close');
        image = checkOpened(subject, await instance.open({ vfs, readOnly: true }), true);
        await checkContent(image, model, 'content after the batch, close and reopen');
        await checkMap(image, model, invariants);
      } finally {
        if (image && !image.isClosed) await drive(s, image.close(), 'close').catch(() => undefined);
        await instance.dispose?.();
      }
    }),
    params,
  );
}
