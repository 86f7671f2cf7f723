import * as fs from 'node:fs';
import { BlockError } from '../errors.js';

/**
 * Kernel pseudo file systems, by statfs f_type (linux/magic.h). Their "regular files" are kernel
 * interfaces, not storage: /proc/sys/kernel/core_pattern, /sys/... attributes, cgroup controls.
 * A backing file name inside an image is untrusted data, and `blk commit` writes into the backing
 * file: a hostile image naming /proc/sys/kernel/core_pattern must not turn a commit run as root into
 * a write there. QEMU refuses /proc files only by accident (its SEEK_END fails); blk says why.
 */
const PSEUDO_FS: ReadonlyMap<number, string> = new Map([
  [0x9fa0, 'proc'],
  [0x62656572, 'sysfs'],
  [0x64626720, 'debugfs'],
  [0x74726163, 'tracefs'],
  [0x73636673, 'securityfs'],
  [0x27e0eb, 'cgroup'],
  [0x63677270, 'cgroup2'],
  [0x62656570, 'configfs'],
  [0xde5e81e4, 'efivarfs'],
  [0xcafe4a11, 'bpf'],
  [0x6165676c, 'pstore'],
  [0xf97cff8c, 'selinuxfs'],
  [0x65735543, 'fusectl'],
  [0x1cd1, 'devpts'],
]);

/** The pseudo file system the open descriptor `fd` lies on, or undefined (a real one, or unknown). */
export function pseudoFileSystemOf(fd: number, path: string): string | undefined {
  let type: number;
  try {
    // /proc/self/fd/N is the file that was opened, whatever `path` names now; elsewhere the path.
    type = fs.statfsSync(process.platform === 'linux' ? `/proc/self/fd/${fd}` : path).type;
  } catch {
    return undefined; // statfs unavailable: nothing to say (the open itself succeeded).
  }
  return PSEUDO_FS.get(type >>> 0);
}

/**
 * Refuses a regular file of a kernel pseudo file system: /proc always (QEMU cannot open one either:
 * its size is not seekable), the others when opened for writing (reading a sysfs attribute as a
 * raw image is what qemu-img allows).
 */
export function refusePseudoFile(fd: number, path: string, writable: boolean): void {
  const fsName = pseudoFileSystemOf(fd, path);
  if (fsName === undefined || (!writable && fsName !== 'proc')) return;
  throw new BlockError(
    'special-file',
    `is a file of the kernel's ${fsName} pseudo file system, not a regular file${writable ? ' (refused for writing)' : ''}`,
    { path },
  );
}
