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
 * here), class by class as the kernel does (an owner denied by the owner bits
 * is denied, whatever the others' bits say): the file must be readable, and
 * every directory on its real path searchable (a world-readable file in a
 * directory only root may enter is out of the owner's reach too). A file
 * reachable only through another group is refused, and the message says how
 * to allow it.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';

/** The permission bits (`rwx`, 0-7) that apply to `uid`/`gid` on a file with these stats. */
function bitsFor(st: fs.Stats, uid: number, gid: number): number {
  if (st.uid === uid) return (st.mode >> 6) & 7;
  if (st.gid === gid) return (st.mode >> 3) & 7;
  return st.mode & 7;
}

function modeOf(st: fs.Stats): string {
  return (st.mode & 0o777).toString(8).padStart(3, '0');
}

/** undefined when `backing` may be read for `overlay`'s owner; else why not. */
export function ownerMayRead(overlay: string, backing: string): string | undefined {
  const me = process.geteuid?.();
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(backing) && !/^file:/i.test(backing)) {
    // A URL: only the user's own local images make blk send requests.
    if (/^[a-z][a-z0-9+.-]*:\/\//i.test(overlay) || me === undefined) return undefined;
    let uid: number;
    try {
      uid = fs.statSync(overlay).uid;
    } catch {
      return undefined;
    }
    if (uid === me) return undefined;
    return `the image belongs to uid ${uid}; blk does not fetch URLs it names on their behalf`;
  }
  let image: fs.Stats;
  let target: fs.Stats;
  let real: string;
  try {
    image = fs.statSync(overlay);
    target = fs.statSync(backing);
    real = fs.realpathSync(backing);
  } catch {
    return undefined; // missing: the open reports it
  }
  if (me === undefined || image.uid === me) return undefined;
  const who = `the image belongs to uid ${image.uid}, who cannot read this file`;
  const allow = '; blk does not read it on their behalf (allow it with --backing-dir DIR)';
  if ((bitsFor(target, image.uid, image.gid) & 4) === 0) {
    return `${who} (owner ${target.uid}, mode ${modeOf(target)})${allow}`;
  }
  // Every directory on the way must let the owner through (search permission).
  for (let dir = path.dirname(real); ; dir = path.dirname(dir)) {
    let st: fs.Stats;
    try {
      st = fs.statSync(dir);
    } catch {
      return undefined;
    }
    if ((bitsFor(st, image.uid, image.gid) & 1) === 0) {
      return `${who}: directory ${dir} does not let them through (owner ${st.uid}, mode ${modeOf(st)})${allow}`;
    }
    if (path.dirname(dir) === dir) break;
  }
  return undefined;
}
