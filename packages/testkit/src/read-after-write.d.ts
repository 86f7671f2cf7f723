import fc from 'fast-check';
import { MemoryVfs, type Image } from '@blk/core/portable';
import { type RangeConstraints } from './arbitraries.js';
import { type ImageModel, type InvariantOptions } from './invariants.js';
import { type ProofOptions } from './options.js';
import type { SubjectInstance, TestSubject } from './subject.js';
/** The system under test, as the commands see it. */
export interface ImageReal {
    /** The open image; replaced by `reopen`. */
    image: Image;
    /** Closes `image` and opens the subject again (writable). */
    reopen(): Promise<void>;
}
type ImageCommand = fc.AsyncCommand<ImageModel, ImageReal>;
export interface CommandOptions extends InvariantOptions {
    maxOps: number;
    /** fast-check's replay hint for a shrunk command sequence (see `ProofOptions.replayPath`). */
    replayPath?: string;
}
/**
 * The command sequences `checkReadAfterWrite` runs, for authors who want to
 * drive `fc.asyncModelRun` themselves: writes (weight 6), reads (5),
 * status queries (2), flushes (1), close/reopen (1) and full maps (1).
 */
export declare function imageCommands(range: RangeConstraints, options: CommandOptions): fc.Arbitrary<Iterable<ImageCommand>>;
/** Resolved range constraints for a subject. */
export declare function rangeConstraints(subject: TestSubject, options: ProofOptions): RangeConstraints;
/** Runs `subject.setup` for one run and checks what it returns. */
export declare function setUp(subject: TestSubject, seed: number): Promise<{
    vfs: MemoryVfs;
    instance: SubjectInstance;
}>;
export declare function checkOpened(subject: TestSubject, image: Image, readOnly: boolean): Image;
/**
 * The read-after-write proof. For `numRuns` random command sequences, each
 * on a fresh `subject.setup()`:
 *
 * - every read returns exactly what an in-memory model of the guest-visible
 *   image holds: the initial content with every earlier write applied, for
 *   any offset and length (unaligned ones included), across flushes and
 *   close/reopen;
 * - `isAllocated`/`chainStatus`/`map` stay sane (see `checkStatusAt`,
 *   `checkMap`);
 * - at the end the image is closed, reopened read-only, and read whole.
 *
 * Rejects (with fast-check's counterexample, seed and replay path) on the
 * first violation.
 */
export declare function checkReadAfterWrite(subject: TestSubject, options?: ProofOptions): Promise<void>;
export {};
