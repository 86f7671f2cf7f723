/**
 * How convert writes DST, decided from what DST is (qemu-img opens the
 * existing target and truncates it in place, following symlinks; blk keeps
 * its write-then-rename crash safety wherever a rename preserves what
 * qemu-img preserves):
 *
 * | DST                              | written                                          |
 * | -------------------------------- | ------------------------------------------------ |
 * | missing                          | temporary file beside it, renamed into place     |
 * | regular file, one link           | the same, with DST's mode and owner copied first |
 * | symlink                          | as its target (temporary file in the target's directory) |
 * | regular file with several links  | in place (a rename would split the links)        |
 * | block device                     | in place, every byte (the device is not zeroed)  |
 * | FIFO, socket, char device, dir   | refused (`special-file`)                         |
 */
import {
  BlockError,
  fileTypeName,
  isBlockError,
  type FileAttributes,
  type FileStat,
  type Storage,
  type Vfs,
} from '@blk/core/portable';

export interface TargetPlan {
  /** The file to write: DST, or where its symlinks lead. */
  path: string;
  /** It exists already (then it is locked and checked against the files read before anything is written). */
  exists: boolean;
  method: 'rename' | 'in-place';
  /** A block device: written in place, zeros included. */
  device: boolean;
  /** Mode and owner to give the replacing file (an existing regular file's). */
  attributes?: FileAttributes;
}

async function statOrMissing(get: () => Promise<FileStat>): Promise<FileStat | undefined> {
  try {
    return await get();
  } catch (err) {
    if (isBlockError(err) && err.code === 'ENOENT') return undefined;
    throw err;
  }
}

export async function planTarget(vfs: Vfs, dst: string): Promise<TargetPlan> {
  const link = await statOrMissing(() => vfs.lstat(dst));
  if (!link) return { path: dst, exists: false, method: 'rename', device: false };
  let st = link;
  let path = dst;
  if (link.isSymbolicLink) {
    const followed = await statOrMissing(() => vfs.stat(dst));
    if (!followed) {
      throw new BlockError('invalid-argument', 'is a symbolic link to a missing file; name the file itself', {
        path: dst,
      });
    }
    st = followed;
    path = await vfs.realpath(dst);
  }
  const type = st.type ?? (st.isFile ? 'file' : st.isDirectory ? 'directory' : undefined);
  if (type === 'block-device') return { path, exists: true, method: 'in-place', device: true };
  if (type !== 'file') {
    throw new BlockError(
      'special-file',
      `is ${fileTypeName(type)}: convert writes only regular files and block devices`,
      { path: dst },
    );
  }
  if ((st.nlink ?? 1) > 1) return { path, exists: true, method: 'in-place', device: false };
  const plan: TargetPlan = { path, exists: true, method: 'rename', device: false };
  if (st.mode !== undefined && st.uid !== undefined && st.gid !== undefined) {
    plan.attributes = { mode: st.mode, uid: st.uid, gid: st.gid };
  }
  return plan;
}

/** A fresh temporary name beside `dst`: `${dst}.tmp-` and 8 random hex digits. */
export function tempNameFor(dst: string): string {
  const bytes = new Uint8Array(4);
  globalThis.crypto.getRandomValues(bytes);
  return `${dst}.tmp-${Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('')}`;
}

/** Gives `path` the replaced file's mode and owner; false when the Vfs cannot (or may not). */
async function giveAttributes(vfs: Vfs, path: string, attributes: FileAttributes): Promise<boolean> {
  if (!vfs.setAttributes) return true; // No owners or modes on this Vfs: nothing to keep.
  try {
    await vfs.setAttributes(path, attributes);
    return true;
  } catch {
    return false;
  }
}

/**
 * Carries out a `TargetPlan` for a job that writes a new image (convert, dd):
 * `lock` holds an existing target open (locked) so that a target another
 * process writes is refused before anything is created; `create` makes the
 * image under a temporary name with the target's mode and owner (or in place,
 * where they cannot be given: chown to another user needs root); `finish`
 * renames it over the target; `abandon` removes the temporary file; `release`
 * drops the lock. `onTempFile` hears the temporary name (the blk command
 * removes it when interrupted) and undefined once it is gone.
 */
export class TargetWriter {
  private tmp: string | undefined;
  private guard: Storage | undefined;
  private inPlace: boolean;

  constructor(
    private readonly vfs: Vfs,
    readonly plan: TargetPlan,
    private readonly onTempFile?: (path: string | undefined) => void,
  ) {
    this.inPlace = plan.method === 'in-place';
  }

  get method(): 'rename' | 'in-place' {
    return this.inPlace ? 'in-place' : 'rename';
  }

  /** Refuses a target another process has open for writing (in place, `create` locks before truncating). */
  async lock(): Promise<void> {
    if (!this.inPlace && this.plan.exists) this.guard = await this.vfs.open(this.plan.path, { readOnly: false });
  }

  /** Creates the image through `make(path, overwrite)` and returns the path to write it at. */
  async create(make: (path: string, overwrite: boolean) => Promise<void>): Promise<string> {
    if (!this.inPlace) {
      const tmp = tempNameFor(this.plan.path);
      this.tmp = tmp;
      this.onTempFile?.(tmp);
      await make(tmp, false);
      // The target's mode and owner before any data lands in the file.
      if (!this.plan.attributes || (await giveAttributes(this.vfs, tmp, this.plan.attributes))) return tmp;
      await this.abandon();
      await this.release();
      this.inPlace = true;
    }
    await make(this.plan.path, true);
    return this.plan.path;
  }

  /** Renames the finished image over the target; returns the temporary name it had (undefined in place). */
  async finish(): Promise<string | undefined> {
    const tmp = this.tmp;
    if (tmp === undefined) return undefined;
    await this.vfs.rename(tmp, this.plan.path);
    this.tmp = undefined;
    this.onTempFile?.(undefined);
    return tmp;
  }

  /** Removes the temporary file, if any (a failed job). */
  async abandon(): Promise<void> {
    const tmp = this.tmp;
    if (tmp === undefined) return;
    this.tmp = undefined;
    await this.vfs.remove(tmp).catch(() => undefined); // Already gone.
    this.onTempFile?.(undefined);
  }

  async release(): Promise<void> {
    const guard = this.guard;
    this.guard = undefined;
    await guard?.close().catch(() => undefined);
  }
}
