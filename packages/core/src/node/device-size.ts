import * as fs from 'node:fs';
import { syscallError, type PositionalSyscalls } from './syscalls.js';

/**
 * A block device's size from /sys/dev/block/MAJOR:MINOR/size (Linux; in
 * 512-byte sectors whatever the device's sector size), without opening it.
 */
export function sysfsDeviceSize(rdev: bigint): number {
  const major = ((rdev >> 8n) & 0xfffn) | ((rdev >> 32n) & ~0xfffn);
  const minor = (rdev & 0xffn) | ((rdev >> 12n) & ~0xffn);
  const file = `/sys/dev/block/${major}:${minor}/size`;
  const text = fs.readFileSync(file, 'utf8').trim();
  if (!/^[0-9]+$/.test(text)) throw new Error(`unexpected size '${text}' in ${file}`);
  const size = Number(text) * 512;
  if (!Number.isSafeInteger(size)) throw new Error(`device size of ${text} sectors is out of range`);
  return size;
}

/**
 * An open block device's size, as QEMU and UML find it (fstat says 0): lseek
 * SEEK_END through the syscalls when they have it, else
 * /sys/dev/block/MAJOR:MINOR/size.
 */
export function openDeviceSize(fd: number, rdev: bigint, syscalls: PositionalSyscalls | undefined): number {
  const end = syscalls?.seekEnd?.(fd);
  if (end !== undefined) {
    if (end < 0) throw syscallError(end, 'lseek');
    return end;
  }
  return sysfsDeviceSize(rdev);
}
