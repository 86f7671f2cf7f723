/**
 * The descriptor blk io keeps on the file it opened, for two things QEMU's reopen does and blk's
 * close-then-open would not:
 *
 * - The OS lock is held the whole time. blk's lock is one whole-file OFD lock (exclusive for a
 *   writer, shared for a reader), and two descriptors of one process conflict with each other, so
 *   the lock cannot pass from the old image's descriptor to the new one's. Instead this descriptor
 *   holds it, and the image's own storage opens the file unlocked (through `/proc/self/fd/N`: the
 *   very inode that is locked). A reopen closes the image and opens it again while the lock stays;
 *   -r to -w converts the shared lock to an exclusive one on this descriptor, -w to -r back (the
 *   kernel converts an OFD lock atomically, and a refused upgrade keeps the shared lock).
 * - A failed reopen puts back the very file it had, even when the name was deleted or replaced
 *   meanwhile: the restore opens the held inode, under the file's own name.
 *
 * Regular files on Linux only (OFD locks and /proc); elsewhere, and for devices, the file opens by
 * name through the locking Vfs as any other command's, and reopen releases the lock for a moment.
 */
import * as fs from 'node:fs';
import {
  BlockError,
  FilterStorage,
  ForwardingVfs,
  lockFd,
  unlockFd,
  type LockPolicy,
  type Storage,
  type Vfs,
  type VfsOpenOptions,
} from '@blk/images';
import { hostOptionsFromEnvironment } from '../environment.js';

/** What the held descriptor locks: a writer's exclusive lock, a reader's shared one, or nothing (-U). */
export type HeldLock = 'exclusive' | 'shared' | 'none';

const STRENGTH: Record<HeldLock, number> = { none: 0, shared: 1, exclusive: 2 };

/** Whether `a` locks out more than `b`. */
export function stronger(a: HeldLock, b: HeldLock): boolean {
  return STRENGTH[a] > STRENGTH[b];
}

/** A descriptor kept on an open image's file, holding its lock. */
export interface HeldFile {
  fd: number;
  /** The file as opened (errors name it). */
  path: string;
  /** Opened read-write (an exclusive lock needs it; a file blk may not write is held read-only). */
  writable: boolean;
  lock: HeldLock;
}

function lockOptions(): { policy?: LockPolicy; addon?: string } {
  const { lock, addon } = hostOptionsFromEnvironment(process.env);
  return { ...(lock !== undefined ? { policy: lock } : {}), ...(addon !== undefined ? { addon } : {}) };
}

/**
 * A descriptor on `path` when it is a regular file on Linux (read-write when allowed, so that a
 * reader can become a writer without a second descriptor), holding no lock yet; undefined
 * otherwise. Non-blocking: should the path be a FIFO, the open must not stall.
 */
export function holdFile(path: string): HeldFile | undefined {
  if (process.platform !== 'linux') return undefined;
  const { O_RDONLY, O_RDWR, O_NONBLOCK, O_NOCTTY } = fs.constants;
  let fd: number;
  let writable = true;
  try {
    fd = fs.openSync(path, O_RDWR | O_NONBLOCK | O_NOCTTY);
  } catch {
    writable = false;
    try {
      fd = fs.openSync(path, O_RDONLY | O_NONBLOCK | O_NOCTTY);
    } catch {
      return undefined;
    }
  }
  if (!fs.fstatSync(fd).isFile()) {
    fs.closeSync(fd);
    return undefined;
  }
  return { fd, path, writable, lock: 'none' };
}

/**
 * Sets the lock `held` holds to `want` without letting it go in between (an OFD lock converts in
 * place). Throws BlockError `locked` when another process holds a conflicting lock; the lock held
 * before is then kept. An exclusive lock on a file held read-only is not taken: opening the file
 * for writing fails on its own (the image's open reports why: permission, read-only file system).
 */
export function setHeldLock(held: HeldFile, want: HeldLock): void {
  if (want === held.lock) return;
  if (want === 'exclusive' && !held.writable) return;
  if (want === 'none') unlockFd(held.fd, lockOptions());
  else lockFd(held.fd, want, held.path, lockOptions());
  held.lock = want;
}

/**
 * Throws when `held.path` no longer names the held inode: QEMU opens a file by its name again when
 * a reopen changes read-only to read-write or back (a new descriptor for the new access mode), so
 * such a reopen of a file deleted or replaced meanwhile fails as opening the name fails.
 */
export function checkNameStillHeld(held: HeldFile): void {
  let now: fs.Stats;
  try {
    now = fs.statSync(held.path);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new BlockError('io', `cannot open: ${code ?? String(err)}`, {
      path: held.path,
      ...(code !== undefined ? { code } : {}),
    });
  }
  const was = fs.fstatSync(held.fd);
  if (now.dev !== was.dev || now.ino !== was.ino) {
    throw new BlockError('io', 'the file was replaced since it was opened (blk io keeps the one it had)', {
      path: held.path,
    });
  }
}

export function releaseFile(held: HeldFile | undefined): void {
  if (held) fs.closeSync(held.fd);
}

/** The storage of the held inode, named as the file it was opened as. */
class NamedStorage extends FilterStorage {
  constructor(
    next: Storage,
    private readonly name: string,
  ) {
    super(next);
  }
  override get path(): string {
    return this.name;
  }
}

/**
 * Opens `path` (relative or absolute) as the held inode, unlocked (`held` holds the lock), through
 * `unlocked`; every other path (backing files) through `inner`, locked as usual. A read-only
 * force-share open of a file held with no lock opens by name through `inner`, which takes no lock
 * either and warns when a writer holds the file.
 */
export class HeldFileVfs extends ForwardingVfs {
  constructor(
    inner: Vfs,
    private readonly unlocked: Vfs,
    private readonly path: string,
    private readonly held: HeldFile,
  ) {
    super(inner);
  }

  override async open(path: string, options?: VfsOpenOptions): Promise<Storage> {
    const cwd = this.inner.cwd();
    if (this.inner.resolve(cwd, path) !== this.inner.resolve(cwd, this.path)) return super.open(path, options);
    const readOnly = options?.readOnly === true;
    if (readOnly && options?.forceShare && this.held.lock === 'none') return super.open(path, options);
    // Never an open the held lock does not cover (an unlocked writer, or reader).
    const needs: HeldLock = readOnly ? (options?.forceShare ? 'none' : 'shared') : 'exclusive';
    if (stronger(needs, this.held.lock)) {
      // Held read-only: not writable by us, and the open fails with the system's reason (EACCES, EROFS).
      const opened = await this.unlocked.open(path, options);
      await opened.close();
      throw new BlockError('io', `${path} is open for writing without its lock`, { path });
    }
    return new NamedStorage(await this.unlocked.open(`/proc/self/fd/${this.held.fd}`, options), path);
  }
}
