/**
 * @blk/testkit: property-based proofs for @blk/core block drivers.
 *
 * Framework-agnostic: every check returns a promise that rejects with
 * fast-check's report (counterexample, seed, replay path) on the first
 * violation, so it runs under vitest, jest, node:test or a plain script.
 */
export { checkReadAfterWrite, imageCommands, rangeConstraints } from './read-after-write.js';
export { checkConcurrentWrites, drive } from './concurrent.js';
export { chainSubject, } from './subject.js';
export { ScheduledStorage, ScheduledVfs } from './scheduled-storage.js';
export { checkStatusAt, checkMap, checkContent } from './invariants.js';
export { envRuns } from './options.js';
export { pattern, fillPattern, prng } from './pattern.js';
export { assertBytesEqual, firstDifference, isAllZero } from './compare.js';
export { offsetArb, lengthArb, rangeArb } from './arbitraries.js';
