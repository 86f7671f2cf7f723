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
import { BlockError, fileTypeName, isBlockError, type FileAttributes, type FileStat, type Vfs } from '@blk/core';

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
      throw new BlockError('invalid-argument', 'is a symbolic link to a missing file; name the file itself', { path: dst });
    }
    st = followed;
    path = await vfs.realpath(dst);
  }
  const type = st.type ?? (st.isFile ? 'file' : st.isDirectory ? 'directory' : undefined);
  if (type === 'block-device') return { path, exists: true, method: 'in-place', device: true };
  if (type !== 'file') {
    throw new BlockError('special-file', `is ${fileTypeName(type)}: convert writes only regular files and block devices`,
      { path: dst });
  }
  if ((st.nlink ?? 1) > 1) return { path, exists: true, method: 'in-place', device: false };
  const plan: TargetPlan = { path, exists: true, method: 'rename', device: false };
  if (st.mode !== undefined && st.uid !== undefined && st.gid !== undefined) {
    plan.attributes = { mode: st.mode, uid: st.uid, gid: st.gid };
  }
  return plan;
}
