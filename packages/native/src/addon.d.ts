/** What the C side exports (see native/lock.c and native/io.c). */
export interface NativeAddon {
    lock(fd: number, mode: number): [number, number];
    query(fd: number, mode: number): [number, number];
    /** A lock another holder has on bytes [start, start+len): [type (0 none, 1 read, 2 write), pid, its start, its length (0: to the end)]. */
    queryRange?(fd: number, start: number, len: number): [number, number, number, number];
    pread(fd: number, into: Uint8Array, position: number): number;
    pwrite(fd: number, data: Uint8Array, position: number): number;
    /** lseek(2): what 0 = SEEK_DATA, 1 = SEEK_HOLE, 2 = SEEK_END (position 0); the position found, or -errno. */
    seek(fd: number, position: number, what: number): number;
    /** posix_fallocate(3): 0, or -errno. */
    fallocate(fd: number, offset: number, length: number): number;
    /** fallocate(2) keeping the size: punch 1 = PUNCH_HOLE, 0 = ZERO_RANGE; 0 or -errno. */
    zeroRange(fd: number, position: number, length: number, punch: number): number;
}
/** The addon, or undefined when it cannot be loaded (`addonLoadError()` says why). */
export declare function loadAddon(): NativeAddon | undefined;
/** Whether building the addon again could fix the failure `addonLoadError()` names. */
export declare function addonRebuildMayHelp(): boolean;
/** Why the addon did not load, once `loadAddon()` has failed. */
export declare function addonLoadError(): string | undefined;
