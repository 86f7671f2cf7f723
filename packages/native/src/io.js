import { loadAddon } from './addon.js';
function disabled() {
    const v = (process.env.BLK_NATIVE_IO ?? 'on').toLowerCase();
    return v === 'off' || v === '0' || v === 'false';
}
/**
 * The addon's pread/pwrite, or undefined (no addon, or BLK_NATIVE_IO=off).
 * Pass it as `new NodeVfs({ syscalls: nativeSyscalls() })`.
 */
export function nativeSyscalls() {
    if (disabled())
        return undefined;
    const addon = loadAddon();
    return addon ? syscallsOf(addon) : undefined;
}
/**
 * What an addon offers, as PositionalSyscalls: an addon built from an older
 * checkout (install scripts not re-run) may lack calls, so only the ones it
 * has are offered, and without pread/pwrite nothing.
 */
export function syscallsOf(addon) {
    const { pread, pwrite, seek, fallocate, zeroRange } = addon;
    if (typeof pread !== 'function' || typeof pwrite !== 'function')
        return undefined;
    const syscalls = { pread, pwrite };
    if (typeof seek === 'function') {
        syscalls.seekData = (fd, position) => seek(fd, position, 0);
        syscalls.seekHole = (fd, position) => seek(fd, position, 1);
        // An addon built before SEEK_END was added answers -EINVAL: then the storage asks sysfs.
        syscalls.seekEnd = (fd) => seek(fd, 0, 2);
    }
    if (typeof fallocate === 'function')
        syscalls.allocate = fallocate;
    if (typeof zeroRange === 'function') {
        syscalls.zeroRange = (fd, position, length, punch) => zeroRange(fd, position, length, punch ? 1 : 0);
    }
    return syscalls;
}
