import * as fs from 'node:fs';
import { constants as osConstants } from 'node:os';
import { BlockError, ioError } from '../errors.js';
import type { StorageExtent } from '../storage/storage.js';
import { syscallError, type PositionalSyscalls } from './syscalls.js';

/**
 * `io: 'sync'` mode of NodeFileStorage: positional calls on the main thread
 * (through `syscalls` when given, else `fs.readSync`/`writeSync`), and what
 * only the syscalls offer (extents, fallocate, zero ranges). Arguments arrive
 * checked by the storage.
 */
export class SyncIo {
  constructor(
    private readonly path: string,
    private readonly fd: number,
    readonly syscalls: PositionalSyscalls | undefined,
  ) {}

  /** Reads until `into` is full or the end of the file; the bytes read. */
  read(offset: number, into: Uint8Array): number {
    let done = 0;
    try {
      while (done < into.length) {
        const n = this.pread(done === 0 ? into : into.subarray(done), offset + done);
        if (n === 0) break;
        done += n;
      }
    } catch (err) {
      throw ioError(this.path, 'read', err, offset + done);
    }
    return done;
  }

  /** Writes all of `data`. */
  write(offset: number, data: Uint8Array): void {
    let done = 0;
    try {
      while (done < data.length) {
        const n = this.pwrite(done === 0 ? data : data.subarray(done), offset + done);
        if (n <= 0) throw new Error('short write: the kernel accepted no bytes');
        done += n;
      }
    } catch (err) {
      throw ioError(this.path, 'write', err, offset + done);
    }
  }

  /** One positional read (the caller loops over short counts). */
  private pread(into: Uint8Array, position: number): number {
    const sys = this.syscalls;
    if (sys === undefined) return fs.readSync(this.fd, into, 0, into.length, position);
    const n = sys.pread(this.fd, into, position);
    if (n < 0) throw syscallError(n, 'read');
    return n;
  }

  private pwrite(data: Uint8Array, position: number): number {
    const sys = this.syscalls;
    if (sys === undefined) return fs.writeSync(this.fd, data, 0, data.length, position);
    const n = sys.pwrite(this.fd, data, position);
    if (n < 0) throw syscallError(n, 'write');
    return n;
  }

  /** The syscalls can seek for data and holes. */
  get hasExtents(): boolean {
    return this.syscalls?.seekData !== undefined && this.syscalls.seekHole !== undefined;
  }

  /** `extentAt` over lseek SEEK_DATA/SEEK_HOLE (as QEMU's file-posix find_allocation); length > 0. */
  extentAt(offset: number, length: number): StorageExtent | undefined {
    const sys = this.syscalls!;
    const data = this.seekResult(sys.seekData!(this.fd, offset), offset);
    if (data === undefined) return undefined;
    // No data from here to the end of the file, or a hole up to the next data.
    if (data === 'none') return { data: false, length };
    if (data > offset) return { data: false, length: Math.min(length, data - offset) };
    const hole = this.seekResult(sys.seekHole!(this.fd, offset), offset);
    // The file changed between the two calls (truncated under us): say nothing rather than guess.
    if (hole === undefined || hole === 'none' || hole <= offset) return undefined;
    return { data: true, length: Math.min(length, hole - offset) };
  }

  /** posix_fallocate through the syscalls; `not-supported` where the file system cannot. */
  allocate(offset: number, length: number): void {
    const result = this.syscalls!.allocate!(this.fd, offset, length);
    if (result === 0) return;
    const errno = -result;
    if (
      errno === osConstants.errno.EOPNOTSUPP
      || errno === osConstants.errno.ENOTSUP
      || errno === osConstants.errno.ENOSYS
    ) {
      throw new BlockError('not-supported', 'the file system cannot preallocate (fallocate)', {
        path: this.path,
        offset,
      });
    }
    throw ioError(this.path, 'fallocate', syscallError(result, 'posix_fallocate'), offset);
  }

  /** fallocate(2) punch/zero; false where the file system cannot (the caller writes zeros). */
  zeroRange(offset: number, length: number, punch: boolean): boolean {
    const result = this.syscalls!.zeroRange!(this.fd, offset, length, punch);
    if (result >= 0) return true;
    const errno = -result;
    if (
      errno === osConstants.errno.EOPNOTSUPP
      || errno === osConstants.errno.ENOTSUP
      || errno === osConstants.errno.ENOSYS
      || errno === osConstants.errno.EINVAL
    )
      return false;
    throw ioError(this.path, 'write', syscallError(result, 'fallocate'), offset);
  }

  /** A seek's position; 'none' for ENXIO; undefined where the file system cannot tell. */
  private seekResult(result: number, offset: number): number | 'none' | undefined {
    if (result >= 0) return result;
    const errno = -result;
    if (errno === osConstants.errno.ENXIO) return 'none';
    if (
      errno === osConstants.errno.EINVAL
      || errno === osConstants.errno.EOPNOTSUPP
      || errno === osConstants.errno.ENOTSUP
    )
      return undefined;
    throw ioError(this.path, 'seek', syscallError(result, 'lseek'), offset);
  }
}
