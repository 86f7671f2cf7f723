/**
 * The io module of @blk/native: positional reads and writes, and where a
 * file's data and holes are (lseek SEEK_DATA/SEEK_HOLE), through the addon, for NodeFileStorage in `io: 'sync'` mode (see PositionalSyscalls in
 * @blk/core for why). Without the addon, or with BLK_NATIVE_IO=off, there is
 * nothing to offer and storages use Node's fs calls, which do the same work
 * more slowly.
 */
import type { PositionalSyscalls } from '@blk/core';
import { type NativeAddon } from './addon.js';
/**
 * The addon's pread/pwrite, or undefined (no addon, or BLK_NATIVE_IO=off).
 * Pass it as `new NodeVfs({ syscalls: nativeSyscalls() })`.
 */
export declare function nativeSyscalls(): PositionalSyscalls | undefined;
/**
 * What an addon offers, as PositionalSyscalls: an addon built from an older
 * checkout (install scripts not re-run) may lack calls, so only the ones it
 * has are offered, and without pread/pwrite nothing.
 */
export declare function syscallsOf(addon: Partial<NativeAddon>): PositionalSyscalls | undefined;
