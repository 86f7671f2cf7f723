/**
 * The io module of @blk/native: positional reads and writes, and where a
 * file's data and holes are (lseek SEEK_DATA/SEEK_HOLE), through the addon, for NodeFileStorage in `io: 'sync'` mode (see PositionalSyscalls in
 * @blk/core for why). Without the addon, or with `enabled: false` (the blk
 * command's BLK_NATIVE_IO=off), there is nothing to offer and storages use Node's fs calls, which do the same work
 * more slowly.
 */
import type { PositionalSyscalls } from '@blk/core';
import { loadAddon, type NativeAddon } from './addon.js';

export interface NativeIoOptions {
  /** false: offer nothing (storages use Node's fs calls); the blk command passes BLK_NATIVE_IO=off as false. Default true. */
  enabled?: boolean;
  /** Another build of the addon to load (see `loadAddon`). */
  addon?: string;
}

/**
 * The addon's pread/pwrite, or undefined (no addon, or `enabled: false`).
 * Pass it as `new NodeVfs({ syscalls: nativeSyscalls() })`.
 */
export function nativeSyscalls(options: NativeIoOptions = {}): PositionalSyscalls | undefined {
  if (options.enabled === false) return undefined;
  const addon = loadAddon(options.addon);
  return addon ? syscallsOf(addon) : undefined;
}

/**
 * What an addon offers, as PositionalSyscalls: an addon built from an older
 * checkout (install scripts not re-run) may lack calls, so only the ones it
 * has are offered, and without pread/pwrite nothing.
 */
export function syscallsOf(addon: Partial<NativeAddon>): PositionalSyscalls | undefined {
  const { pread, pwrite, seek, fallocate, zeroRange } = addon;
  if (typeof pread !== 'function' || typeof pwrite !== 'function') return undefined;
  const syscalls: PositionalSyscalls = { pread, pwrite };
  if (typeof seek === 'function') {
    syscalls.seekData = (fd, position) => seek(fd, position, 0);
    syscalls.seekHole = (fd, position) => seek(fd, position, 1);
    // An addon built before SEEK_END was added answers -EINVAL: then the storage asks sysfs.
    syscalls.seekEnd = (fd) => seek(fd, 0, 2);
  }
  if (typeof fallocate === 'function') syscalls.allocate = fallocate;
  if (typeof zeroRange === 'function') {
    syscalls.zeroRange = (fd, position, length, punch) => zeroRange(fd, position, length, punch ? 1 : 0);
  }
  return syscalls;
}
