/**
 * Set up for every test file (vitest.config.ts setupFiles): a turn of the event loop before and after
 * each test. vitest's worker reports each test's progress to the main process by an RPC call that
 * fails ("Timeout calling onTaskUpdate", an unhandled error: the run fails) when its answer is not
 * read within 60 s, and the worker reads it only when its event loop turns. Tests that block it
 * (spawnSync of blk and qemu-img) follow one another without a turn in between, so on a loaded
 * machine a run of them added up past 60 s (seen: commit-rebase.test.ts, 13 tests passed and the
 * file failed). With these turns only a single test (or hook) blocking 60 s can do that.
 * Two setImmediate turns, because one queued from the poll phase runs before the next poll.
 */
import { setImmediate as nextTurn } from 'node:timers/promises';
import { afterEach, beforeEach } from 'vitest';

async function turns(): Promise<void> {
  await nextTurn();
  await nextTurn();
}

beforeEach(turns);
afterEach(turns);
