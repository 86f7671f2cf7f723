/**
 * Web Locks (`navigator.locks`) as blk file locks: a writer holds an
 * exclusive lock on a file's name, readers a shared one, across every tab,
 * window and worker of the origin. A request that cannot be granted at once
 * fails with a BlockError `locked` (never waits): a second tab that tries to
 * write an overlay the first one writes is refused, readers share.
 */
import { BlockError } from '@blk/core/portable';

export type LockMode = 'exclusive' | 'shared';

/** A granted lock, held until `release`. */
export interface HeldLock {
  readonly name: string;
  readonly mode: LockMode;
  release(): void;
}

interface LockManagerLike {
  request(
    name: string,
    options: { mode: LockMode; ifAvailable: boolean },
    callback: (lock: unknown) => Promise<void> | void,
  ): Promise<unknown>;
}

/** The origin's lock manager, or undefined where there is none (an insecure context, an old browser). */
export function lockManager(): LockManagerLike | undefined {
  const nav = (globalThis as { navigator?: { locks?: LockManagerLike } }).navigator;
  return nav?.locks;
}

/** The Web Lock name of a blk file: one name per path. */
export function lockName(path: string): string {
  return `blk:${path}`;
}

/**
 * Takes the Web Lock `lockName(path)` in `mode` without waiting: resolves
 * with the held lock, or rejects with `locked` when a holder conflicts
 * (an exclusive holder for any request; any holder for an exclusive one).
 * Where the browser has no Web Locks, `required` decides: true rejects with
 * `not-supported`, false (default) resolves with a lock that holds nothing.
 */
export async function acquireLock(
  path: string,
  mode: LockMode,
  options: { required?: boolean } = {},
): Promise<HeldLock> {
  const name = lockName(path);
  const locks = lockManager();
  if (locks === undefined) {
    if (options.required) {
      throw new BlockError('not-supported', 'this browser context has no Web Locks (navigator.locks)', { path });
    }
    return { name, mode, release: () => undefined };
  }
  let release!: () => void;
  const held = new Promise<void>((resolve) => {
    release = resolve;
  });
  const granted = await new Promise<boolean>((resolve, reject) => {
    locks
      .request(name, { mode, ifAvailable: true }, (lock) => {
        if (lock === null) {
          resolve(false);
          return undefined;
        }
        resolve(true);
        return held;
      })
      .catch(reject);
  });
  if (!granted) {
    throw new BlockError(
      'locked',
      mode === 'exclusive'
        ? 'another tab or worker has this file open (Web Lock held): cannot open it for writing'
        : 'another tab or worker is writing this file (Web Lock held exclusively)',
      { path, code: 'EAGAIN' },
    );
  }
  let released = false;
  return {
    name,
    mode,
    release() {
      if (released) return;
      released = true;
      release();
    },
  };
}
