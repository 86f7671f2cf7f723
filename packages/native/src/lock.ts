/**
 * The lock module of @blk/native: OS advisory locks on image files, so that two processes never
 * write one image at once, and so that UML and QEMU see blk's locks and blk
 * sees theirs.
 *
 * - Writable opens take an exclusive lock, read-only opens a shared lock,
 *   on the whole file.
 * - On Linux the lock is an open-file-description lock (fcntl F_OFD_SETLK):
 *   it conflicts with UML's fcntl(F_SETLK) locks and with QEMU's OFD byte
 *   locks, and between two descriptors of one process. Elsewhere the classic
 *   POSIX F_SETLK is used (process-wide; dropped when any descriptor of the
 *   file is closed by the process).
 * - The lock is never waited for: a conflict is a BlockError `locked` at once.
 * - Without the native addon (no C toolchain at install, Windows), locking is
 *   skipped with one clear warning (`process.emitWarning`), and
 *   `lockingAvailable()` says so; the `policy` option `off` turns locking off
 *   on purpose, `require` makes a missing addon an error (the blk command
 *   passes its BLK_LOCK variable as this option; the library reads no
 *   environment variable).
 */
import * as fs from 'node:fs';
import {
  BlockError,
  FilterStorage,
  ForwardingVfs,
  truncateTo,
  type Storage,
  type Vfs,
  type VfsOpenOptions,
} from '@blk/core';
import { addonLoadError, addonRebuildMayHelp, loadAddon } from './addon.js';

export type LockMode = 'exclusive' | 'shared';

/** `on` (default): lock, or warn once and go on without the addon; `off`: never lock; `require`: fail without the addon. */
export type LockPolicy = 'on' | 'off' | 'require';

export interface LockOptions {
  /** See LockPolicy (the blk command passes BLK_LOCK here). Default `on`. */
  policy?: LockPolicy;
  /** Another build of the addon to load (see `loadAddon`; the blk command passes BLK_NATIVE_ADDON). */
  addon?: string;
}

let warned = false;

function policyOf(options: LockOptions): LockPolicy {
  const policy = options.policy ?? 'on';
  // A typo must not quietly mean "lock" (or "don't").
  if (policy !== 'on' && policy !== 'off' && policy !== 'require') {
    throw new BlockError(
      'invalid-argument',
      `lock policy must be 'on', 'off' or 'require', not ${JSON.stringify(policy)}`,
      { field: 'policy' },
    );
  }
  return policy;
}

/** Whether OS locks can be taken here, and if not, why. */
export function lockingAvailable(options: LockOptions = {}): { available: boolean; reason?: string } {
  if (policyOf(options) === 'off') return { available: false, reason: 'disabled by BLK_LOCK=off' };
  return loadAddon(options.addon)
    ? { available: true }
    : { available: false, reason: addonLoadError(options.addon) ?? 'addon not loaded' };
}

function unavailable(path: string, options: LockOptions): void {
  const why = addonLoadError(options.addon) ?? 'addon not loaded';
  if (policyOf(options) === 'require') {
    throw new BlockError('not-supported', `cannot lock ${path}: the @blk/native addon is not available (${why})`, {
      path,
    });
  }
  if (!warned) {
    warned = true;
    const remedy = addonRebuildMayHelp(options.addon)
      ? 'Rebuild it with `npm rebuild @blk/native` (a blk installed from the @blk/cli tarball alone: `npm rebuild -g @blk/cli`; '
        + 'in the blk repository: `pnpm --filter @blk/native run install`; needs a C compiler), '
      : 'Rebuilding will not help (the built addon was not the problem): please report this as a bug of @blk/native; ';
    process.emitWarning(
      `blk: image files are opened WITHOUT OS advisory locks (the @blk/native addon did not load: ${why}). `
        + `Two processes could write one image at once. ${remedy}`
        + 'or set BLK_LOCK=off to silence this warning.',
      { code: 'BLK_NO_LOCK' },
    );
  }
}

/** What a lock attempt did: 'ofd' or 'posix' lock taken, or 'none' (locking unavailable or off). */
export type LockKind = 'ofd' | 'posix' | 'none';

/**
 * Takes a whole-file lock on `fd` (exclusive for writers, shared for
 * readers), without waiting. Throws BlockError `locked` when another holder
 * conflicts (naming its pid when it holds a classic POSIX lock, as UML does).
 */
export function lockFd(fd: number, mode: LockMode, path: string, options: LockOptions = {}): LockKind {
  if (policyOf(options) === 'off') return 'none';
  const native = loadAddon(options.addon);
  if (!native) {
    unavailable(path, options);
    return 'none';
  }
  const [errno, kind] = native.lock(fd, mode === 'exclusive' ? 2 : 1);
  if (errno === 0) {
    // A QEMU writer holds only read locks, none on a reader's bytes: look for its "write" byte
    // and refuse as qemu-img does ("Failed to get shared 'write' lock").
    const writer = mode === 'shared' ? qemuWriter(fd, options) : undefined;
    if (writer) {
      native.lock(fd, 0);
      throw new BlockError(
        'locked',
        `${describeHolder(writer.pid)} has this image open for writing (it holds QEMU's write permission), so blk `
          + 'will not open it (reading it anyway needs force-share)',
        { path, code: 'EAGAIN' },
      );
    }
    return kind === 1 ? 'ofd' : 'posix';
  }
  // EAGAIN / EACCES: someone holds a conflicting lock.
  if (errno === 11 || errno === 13 || errno === 35) {
    const [type, pid] = native.query(fd, mode === 'exclusive' ? 2 : 1);
    const holder =
      type === 0
        ? 'another process'
        : pid > 0
          ? `process ${pid}`
          : 'another open file (an OFD lock, as QEMU or blk take)';
    const what = mode === 'exclusive' ? 'open it for writing' : 'open it';
    throw new BlockError(
      'locked',
      `${holder} holds a ${type === 1 ? 'shared' : 'write'} lock on this image, so blk will not ${what} `
        + `(is a VM or another blk process using it?)`,
      { path, code: errno === 13 ? 'EACCES' : 'EAGAIN' },
    );
  }
  throw new BlockError('io', `locking failed (errno ${errno})`, { path, code: `E${errno}` });
}

/** QEMU's lock byte for its "write" permission (block/file-posix.c: 100 + the bit of BLK_PERM_WRITE). */
const QEMU_PERM_WRITE_BYTE = 101;

/**
 * Another holder of QEMU's write-permission byte on `fd`'s file (a QEMU
 * process writing it), or undefined. QEMU locks its permission bytes one by
 * one (the kernel may merge neighbours: 100-103 for a writer); a lock that
 * reaches outside QEMU's permission bytes 100-199 is someone else's (UML's
 * whole-file read lock on a backing file, a blk reader's), not a writer's.
 */
export function qemuWriter(fd: number, options: LockOptions = {}): { pid: number } | undefined {
  const native = loadAddon(options.addon);
  if (!native?.queryRange || policyOf(options) === 'off') return undefined;
  const [type, pid, start, length] = native.queryRange(fd, QEMU_PERM_WRITE_BYTE, 1);
  const qemuRange = length > 0 && start >= 100 && start + length <= 200;
  return type > 0 && qemuRange ? { pid } : undefined;
}

function describeHolder(pid: number): string {
  return pid > 0 ? `process ${pid}` : 'another process';
}

/** Drops the lock on `fd` (closing the descriptor drops it too). */
export function unlockFd(fd: number, options: LockOptions = {}): void {
  const native = loadAddon(options.addon);
  if (native && policyOf(options) !== 'off') native.lock(fd, 0);
}

/** Who would conflict with a lock of `mode` on `fd`: undefined if nobody. */
export function lockHolder(
  fd: number,
  mode: LockMode = 'exclusive',
  options: LockOptions = {},
): { type: 'read' | 'write'; pid: number } | undefined {
  const native = loadAddon(options.addon);
  if (!native) return undefined;
  const [type, pid] = native.query(fd, mode === 'exclusive' ? 2 : 1);
  if (type < 0) throw new BlockError('io', `lock query failed (errno ${-type})`);
  return type === 0 ? undefined : { type: type === 1 ? 'read' : 'write', pid };
}

/**
 * Locks a storage opened from the host file system: uses its descriptor
 * when it exposes one as `fd` (NodeFileStorage), else opens a descriptor of
 * its own that lives until the storage is closed. Returns the storage, whose
 * `close()` also releases the lock. Read-only storages get a shared lock.
 */
export function lockStorage(storage: Storage, options: { mode?: LockMode } & LockOptions = {}): Storage {
  const mode = options.mode ?? (storage.readOnly ? 'shared' : 'exclusive');
  const own = (storage as unknown as { fd?: unknown }).fd;
  if (typeof own === 'number') {
    lockFd(own, mode, storage.path, options);
    return storage;
  }
  // A separate descriptor (an OFD lock is tied to it, not to the process).
  // O_NONBLOCK: should the path have become a FIFO since the storage was opened, fail rather than wait.
  const c = fs.constants;
  const fd = fs.openSync(storage.path, (mode === 'exclusive' ? c.O_RDWR : c.O_RDONLY) | c.O_NONBLOCK | c.O_NOCTTY);
  try {
    lockFd(fd, mode, storage.path, options);
  } catch (err) {
    fs.closeSync(fd);
    throw err;
  }
  return new LockedStorage(storage, fd);
}

/**
 * qemu-img's `-U` (force-share=on) for a read-only storage: no lock is taken
 * (blk's writers lock the whole file exclusively, so any read lock would
 * conflict with them), and when a writer holds the file the caller is warned
 * that what it reads may be inconsistent: the writer can change data and
 * metadata between two reads.
 */
function warnIfWritten(
  storage: Storage,
  onWarning: ((message: string) => void) | undefined,
  options: LockOptions,
): void {
  if (policyOf(options) === 'off' || !loadAddon(options.addon)) return;
  const own = (storage as unknown as { fd?: unknown }).fd;
  const fd = typeof own === 'number' ? own : fs.openSync(storage.path, 'r');
  let holder: { pid: number } | undefined;
  try {
    // A blk or UML writer holds a write lock; a QEMU writer only its "write" byte.
    holder = lockHolder(fd, 'shared', options) ?? qemuWriter(fd, options);
  } finally {
    // Closing a descriptor that holds no lock drops nothing (OFD locks; where only classic POSIX
    // locks exist, blk holds none on this file in a force-share open).
    if (fd !== own) fs.closeSync(fd);
  }
  if (!holder) return;
  const message =
    `${storage.path}: ${describeHolder(holder.pid)} has this image open for writing; reading it anyway (force-share): `
    + 'what is read may be inconsistent';
  if (onWarning) onWarning(message);
  else process.emitWarning(message, { code: 'BLK_FORCE_SHARE' });
}

/** A storage with a lock held on a descriptor of its own, released on close; everything else is the storage's. */
class LockedStorage extends FilterStorage {
  constructor(
    inner: Storage,
    private readonly lockFd: number,
  ) {
    super(inner);
  }
  override async close(): Promise<void> {
    try {
      await super.close();
    } finally {
      fs.closeSync(this.lockFd);
    }
  }
}

/**
 * A Vfs that locks every file it opens (exclusive for writable opens,
 * shared for read-only ones) before handing the storage out. Wrap NodeVfs
 * with it, or let NodeVfs call `lockStorage` itself.
 */
export class LockingVfs extends ForwardingVfs {
  constructor(
    inner: Vfs,
    private readonly lockOptions: LockOptions = {},
  ) {
    super(inner);
    policyOf(lockOptions); // refused here, not at the first open
  }

  override async open(path: string, options?: VfsOpenOptions): Promise<Storage> {
    // Truncate only once the lock is held: a file another process has open
    // for writing must be refused whole, not emptied and then refused.
    const truncate = options?.truncate === true && options.create === true && options.exclusive !== true;
    const storage = await this.inner.open(path, truncate ? { ...options, truncate: false } : options);
    try {
      if (options?.forceShare && storage.readOnly) {
        warnIfWritten(storage, options.onWarning, this.lockOptions);
        return storage;
      }
      const locked = lockStorage(storage, this.lockOptions);
      if (truncate) await truncateTo(locked, 0);
      return locked;
    } catch (err) {
      await storage.close().catch(() => undefined);
      throw err;
    }
  }
}
