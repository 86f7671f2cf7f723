/**
 * @blk/testkit: property-based proofs for @blk/core block drivers.
 *
 * Framework-agnostic: every check returns a promise that rejects with
 * fast-check's report (counterexample, seed, replay path) on the first
 * violation, so it runs under vitest, jest, node:test or a plain script.
 */
export {
  checkReadAfterWrite,
  imageCommands,
  rangeConstraints,
  type ImageReal,
  type CommandOptions,
  type ZeroFlags,
} from './read-after-write.js';
export { checkConcurrentWrites, drive, type ConcurrentOp, type ConcurrentOptions } from './concurrent.js';
export {
  chainSubject,
  type TestSubject,
  type SubjectContext,
  type SubjectInstance,
  type OpenContext,
  type ChainLayer,
  type ChainSubjectOptions,
} from './subject.js';
export { ScheduledStorage, ScheduledVfs, type ScheduledStorageOptions } from './scheduled-storage.js';
export {
  checkCapabilities,
  checkStatusAt,
  checkMap,
  checkContent,
  type ImageModel,
  type InvariantOptions,
} from './invariants.js';
export { checkChainMap, checkMapAgainstLayers, type ChainMapOptions, type LayerOp } from './chain-map.js';
export { envRuns, type FormatSource, type ProofOptions } from './options.js';
export { pattern, fillPattern, prng, type FillKind } from './pattern.js';
export { assertBytesEqual, firstDifference, isAllZero } from './compare.js';
export { offsetArb, lengthArb, rangeArb, type ByteRange, type RangeConstraints } from './arbitraries.js';
