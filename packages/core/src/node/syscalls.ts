import * as util from 'node:util';

/**
 * Positional system calls that can stand in for `fs.readSync`/`fs.writeSync`
 * in `io: 'sync'` mode. Node's calls validate their arguments in JavaScript
 * and wrap each call in a request object: about 0.25 µs of a 1.5 µs 4 KiB
 * read from the page cache (bench/experiments/pread-cost.mjs). A native binding (`nativeSyscalls()` of
 * @blk/native, which @blk/images' host file system uses) skips that.
 * Arguments arrive validated (an open descriptor, an integer position with
 * position + length below 2^53).
 */
export interface PositionalSyscalls {
  /** pread(2) of `into.length` bytes: bytes read (0 at end of file), or -errno. */
  pread(fd: number, into: Uint8Array, position: number): number;
  /** pwrite(2) of all of `data`: bytes written, or -errno. */
  pwrite(fd: number, data: Uint8Array, position: number): number;
  /**
   * lseek(2) with SEEK_DATA: the first data byte at or after `position`, or
   * -errno (-ENXIO when only a hole follows up to the end of the file).
   * With `seekHole`, lets the storage report holes (`Storage.extentAt`).
   */
  seekData?(fd: number, position: number): number;
  /** lseek(2) with SEEK_HOLE: the first hole at or after `position` (the end of the file counts as one), or -errno. */
  seekHole?(fd: number, position: number): number;
  /**
   * posix_fallocate(3) of [offset, offset+length): 0, or -errno (-EOPNOTSUPP
   * where the file system cannot). Lets the storage offer `Storage.allocate`.
   */
  allocate?(fd: number, offset: number, length: number): number;
  /**
   * fallocate(2) keeping the size: punch true deallocates [position,
   * position + length) (PUNCH_HOLE), false zeroes it (ZERO_RANGE); 0 or
   * -errno. Lets the storage offer `Storage.zeroRange`.
   */
  zeroRange?(fd: number, position: number, length: number, punch: boolean): number;
  /**
   * lseek(2) with SEEK_END, offset 0: the size of a block device (fstat says
   * 0 for them), or -errno. Without it, storages ask /sys/dev/block (Linux).
   */
  seekEnd?(fd: number): number;
}

/** The error fs would have thrown for `-errno` from a PositionalSyscalls call. */
export function syscallError(result: number, syscall: string): NodeJS.ErrnoException {
  const errno = -result;
  // getSystemErrorName answers "Unknown system error -N" for numbers it does not know.
  const name = util.getSystemErrorName(result);
  const code = name.startsWith('E') ? name : `E${errno}`;
  const message = util.getSystemErrorMap().get(result)?.[1] ?? 'system error';
  return Object.assign(new Error(`${code}: ${message}, ${syscall}`), { errno: result, code, syscall });
}
