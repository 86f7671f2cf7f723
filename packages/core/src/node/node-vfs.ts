import * as fs from 'node:fs';
import * as nodePath from 'node:path';
import { BlockError, ioError } from '../errors.js';
import { NodeFileStorage, type NodeIoMode } from './node-storage.js';
// Callbacks, not fs.promises: loading fs/promises (and the readline and stream modules it pulls in)
// costs every blk command milliseconds at start.
import { callback } from './pool-io.js';
import { sysfsDeviceSize } from './device-size.js';
import { typeOfStats } from './stat-type.js';
import type { PositionalSyscalls } from './syscalls.js';
import type { FileAttributes, FileStat, Storage, Vfs, VfsOpenOptions } from '../storage/storage.js';

export interface NodeVfsOptions {
  /** How files talk to the kernel (see NodeIoMode); default 'sync'. */
  io?: NodeIoMode;
  /** `io: 'sync'` only: positional system calls to use instead of Node's (see PositionalSyscalls). */
  syscalls?: PositionalSyscalls;
}

/** The host's file system. */
export class NodeVfs implements Vfs {
  constructor(private readonly options: NodeVfsOptions = {}) {}

  async open(path: string, options: VfsOpenOptions = {}): Promise<Storage> {
    let flags = options.readOnly ? 'r' : 'r+';
    if (options.create) flags = options.exclusive ? 'wx+' : options.truncate ? 'w+' : 'rc+';
    return NodeFileStorage.open(path, {
      readOnly: options.readOnly ?? false,
      flags,
      io: this.options.io,
      syscalls: this.options.syscalls,
      blockDevices: options.blockDevices ?? false,
    });
  }

  async stat(path: string): Promise<FileStat> {
    return toStat(path, () => callback<fs.BigIntStats>((cb) => fs.stat(path, { bigint: true }, cb)));
  }

  async lstat(path: string): Promise<FileStat> {
    return toStat(path, () => callback<fs.BigIntStats>((cb) => fs.lstat(path, { bigint: true }, cb)));
  }

  async realpath(path: string): Promise<string> {
    try {
      return await callback<string>((cb) => fs.realpath.native(path, cb));
    } catch (err) {
      throw missingOrIo(path, 'realpath', err);
    }
  }

  resolve(base: string, path: string): string {
    return nodePath.resolve(base, path);
  }

  dirname(path: string): string {
    return nodePath.dirname(path);
  }

  cwd(): string {
    return process.cwd();
  }

  async exists(path: string): Promise<boolean> {
    try {
      await callback<fs.Stats>((cb) => fs.stat(path, cb));
      return true;
    } catch {
      return false;
    }
  }

  async remove(path: string): Promise<void> {
    try {
      await callback<void>((cb) => fs.unlink(path, cb));
    } catch (err) {
      throw missingOrIo(path, 'remove', err);
    }
  }

  async rename(from: string, to: string): Promise<void> {
    try {
      await callback<void>((cb) => fs.rename(from, to, cb));
    } catch (err) {
      throw missingOrIo(from, 'rename', err);
    }
  }

  async setAttributes(path: string, attributes: FileAttributes): Promise<void> {
    try {
      // Owner first: chown clears the set-user/group-ID bits, which chmod then restores.
      await callback<void>((cb) => fs.chown(path, attributes.uid, attributes.gid, cb));
      await callback<void>((cb) => fs.chmod(path, attributes.mode, cb));
    } catch (err) {
      throw missingOrIo(path, 'chmod', err);
    }
  }
}

async function toStat(path: string, get: () => Promise<fs.BigIntStats>): Promise<FileStat> {
  try {
    const st = await get();
    return {
      // A block device's own size (stat says 0), as the storage opened on it reports.
      size: st.isBlockDevice() ? deviceSizeOr0(st.rdev) : Number(st.size),
      // Whole seconds, floored from nanoseconds: mtimeMs is a float and can round up.
      mtimeSec: Number(st.mtimeNs / 1_000_000_000n),
      isFile: st.isFile(),
      isDirectory: st.isDirectory(),
      isSymbolicLink: st.isSymbolicLink(),
      type: typeOfStats(st),
      id: `${st.dev}:${st.ino}`,
      nlink: Number(st.nlink),
      mode: Number(st.mode & 0o7777n),
      uid: Number(st.uid),
      gid: Number(st.gid),
    };
  } catch (err) {
    throw missingOrIo(path, 'stat', err);
  }
}

function deviceSizeOr0(rdev: bigint): number {
  try {
    return sysfsDeviceSize(rdev);
  } catch {
    return 0; // No sysfs (not Linux): what stat says.
  }
}

function missingOrIo(path: string, op: string, err: unknown): BlockError {
  const code = (err as NodeJS.ErrnoException).code;
  if (code === 'ENOENT') return new BlockError('io', 'no such file or directory', { path, code, cause: err });
  return ioError(path, op, err);
}
