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
export { Rng, hashString, envInt } from './rng.js';
export { SparseBytes } from './sparse.js';
export { CRASH_SECTOR, CrashModel, CrashReplay, CrashSimVfs, CrashStorage, crashStates, isWritePoint, } from './crash.js';
export { FaultyVfs, FaultyStorage, faultError, isInjected, FAULT_KINDS, STORAGE_CALLS, ALL_CALLS, } from './faulty.js';
export { GuardedStorage, GuardedVfs, GuardViolation } from './guarded.js';
export { SectorOracle, hashSector, taggedData } from './oracle.js';
export { mutate, writeField } from './mutate.js';
export { exploreCrashes } from './explore.js';
export { HookedVfs } from './hooked.js';
export { withTimeout, testTimeScale, caught, HangError, yielder } from './util.js';
