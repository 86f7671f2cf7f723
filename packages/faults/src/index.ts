/**
 * @blk/faults: the test harness that checks blk's promises, after SQLite's
 * test VFSes and the CrashMonkey/ALICE way of exploring crash points.
 *
 * - `CrashSimVfs` models the OS page cache: writes are volatile until
 *   `flush()`; `crash()` gives the files a power loss or a kill would leave;
 *   `CrashReplay` + `crashStates` explore every write point.
 * - `FaultyVfs` fails chosen calls (EIO, ENOSPC, short read, short write).
 * - `GuardedVfs` checks that a driver stays inside the file and under a size bound.
 * - `SectorOracle` knows which values each sector may hold after a crash.
 * - `Rng` and `mutate` make every schedule and fuzz input reproducible from a seed.
 */
export { Rng, hashString } from './rng.js';
export { SparseBytes } from './sparse.js';
export {
  CRASH_SECTOR,
  CrashModel,
  CrashReplay,
  CrashSimVfs,
  CrashStorage,
  crashStates,
  isWritePoint,
  type CrashEvent,
  type CrashOptions,
  type CrashState,
  type KeepSpec,
  type PendingPiece,
  type SectorPiece,
} from './crash.js';
export {
  FaultyVfs,
  FaultyStorage,
  faultError,
  isInjected,
  FAULT_KINDS,
  STORAGE_CALLS,
  ALL_CALLS,
  type CallKind,
  type FaultKind,
  type FaultRule,
  type InjectedFault,
} from './faulty.js';
export { GuardedStorage, GuardedVfs, GuardViolation, type GuardOptions, type GuardStats } from './guarded.js';
export { SectorOracle, hashSector, taggedData, type OracleDurability } from './oracle.js';
export { mutate, writeField, type FieldSpec, type MutateOptions } from './mutate.js';
export { exploreCrashes, type ExploreOptions, type ExploreResult, type CrashViolation } from './explore.js';
export { HookedVfs, type StorageHooks, type StorageCall } from './hooked.js';
export { withTimeout, testTimeScale, caught, HangError, yielder } from './util.js';
