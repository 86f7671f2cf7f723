import fc from 'fast-check';
import { type ByteRange } from './arbitraries.js';
import { type ProofOptions } from './options.js';
import { type FillKind } from './pattern.js';
import type { TestSubject } from './subject.js';
/** One request of a concurrent batch. `gap`: scheduler steps to let run before issuing the next request. */
export type ConcurrentOp = ({
    kind: 'write';
    seed: number;
    fill: FillKind;
    gap: number;
} & ByteRange) | ({
    kind: 'read';
    gap: number;
} & ByteRange) | ({
    kind: 'status';
    gap: number;
} & ByteRange) | {
    kind: 'flush';
    gap: number;
};
export interface ConcurrentOptions extends ProofOptions {
    /** Hold back each storage operation's completion too (see `ScheduledStorageOptions`). Default true. */
    delayCompletion?: boolean;
}
/**
 * Resolves with `task` once the scheduler has run everything it needs;
 * rejects when the task can no longer finish: nothing is scheduled and the
 * task has not settled for a while (a request waits on something that never
 * comes: a lost wake-up in a driver or in the core).
 */
export declare function drive<T>(s: fc.Scheduler, task: Promise<T>, what: string): Promise<T>;
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
export declare function checkConcurrentWrites(subject: TestSubject, options?: ConcurrentOptions): Promise<void>;
