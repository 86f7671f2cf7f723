/**
 * The io module of @blk/native: positional reads and writes, and where a
 * file's data and holes are (lseek SEEK_DATA/SEEK_HOLE), through the addon, for NodeFileStorage in `io: 'sync'` mode (see PositionalSyscalls in
 * @blk/core for why). Without the addon, or with BLK_NATIVE_IO=off, there is
 * nothing to offer and storages use Node's fs calls, which do the same work
 * more slowly.
 */
import type { PositionalSyscalls } from '@blk/core';
import { loadAddon } from './addon.js';

function disabled(): boolean {
  const v = (process.env.BLK_NATIVE_IO ?? 'on').toLowerCase();
  return v === 'off' || v === '0' || v === 'false';
}

/**
 * The addon's pread/pwrite, or undefined (no addon, or BLK_NATIVE_IO=off).
 * Pass it as `new NodeVfs({ syscalls: nativeSyscalls() })`.
 */
export function nativeSyscalls(): PositionalSyscalls | undefined {
  if (disabled()) return undefined;
  const addon = loadAddon();
  if (!addon) return undefined;
  const seek = addon.seek;
  return {
    pread: addon.pread,
    pwrite: addon.pwrite,
    seekData: (fd, position) => seek(fd, position, 0),
    seekHole: (fd, position) => seek(fd, position, 1),
  };
}
