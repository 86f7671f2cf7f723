/**
 * The blk command's default rule for backing files, which needs no
 * configuration: an image may name only a file that its own owner can read.
 *
 * An image is data from whoever made it, and its backing path is followed
 * with the rights of whoever runs blk. When that is another user (root
 * converting a user's upload, an admin inspecting a home directory), a path
 * like /etc/shadow would make blk copy, for the image's owner, a file that
 * owner cannot read. Images you own are yours to point anywhere (as
 * qemu-img), and `--backing-dir` / `--forbid-backing` replace this rule with
 * an explicit one.
 *
 * Readability is judged from the permission bits as the owner's uid and the
 * image's group would see them (the owner's other groups are not known
 * here): a file readable only through another group is refused, and the
 * message says how to allow it.
 */
import * as fs from 'node:fs';

/** undefined when `backing` may be read for `overlay`'s owner; else why not. */
export function ownerMayRead(overlay: string, backing: string): string | undefined {
  const me = process.geteuid?.();
  let image: fs.Stats;
  let target: fs.Stats;
  try {
    image = fs.statSync(overlay);
    target = fs.statSync(backing);
  } catch {
    return undefined; // missing: the open reports it
  }
  if (me === undefined || image.uid === me) return undefined;
  if (target.uid === image.uid && (target.mode & 0o400) !== 0) return undefined;
  if (target.gid === image.gid && (target.mode & 0o040) !== 0) return undefined;
  if ((target.mode & 0o004) !== 0) return undefined;
  return `the image belongs to uid ${image.uid}, who cannot read this file (owner ${target.uid}, mode `
    + `${(target.mode & 0o777).toString(8).padStart(3, '0')}); blk does not read it on their behalf `
    + '(allow it with --backing-dir DIR)';
}
