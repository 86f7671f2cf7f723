/**
 * How convert writes DST, decided from what DST is (qemu-img opens the
 * existing target and truncates it in place, following symlinks; blk keeps
 * its write-then-rename crash safety wherever a rename preserves what
 * qemu-img preserves):
 *
 * | DST                              | written                                          |
 * | -------------------------------- | ------------------------------------------------ |
 * | missing                          | temporary file beside it, renamed into place     |
 * | regular file, one link           | the same, with DST's mode and owner copied first |
 * | symlink                          | as its target (temporary file in the target's directory) |
 * | regular file with several links  | in place (a rename would split the links)        |
 * | block device                     | in place, every byte (the device is not zeroed)  |
 * | FIFO, socket, char device, dir   | refused (`special-file`)                         |
 */
import { type FileAttributes, type Vfs } from '@blk/core';
export interface TargetPlan {
    /** The file to write: DST, or where its symlinks lead. */
    path: string;
    /** It exists already (then it is locked and checked against the files read before anything is written). */
    exists: boolean;
    method: 'rename' | 'in-place';
    /** A block device: written in place, zeros included. */
    device: boolean;
    /** Mode and owner to give the replacing file (an existing regular file's). */
    attributes?: FileAttributes;
}
export declare function planTarget(vfs: Vfs, dst: string): Promise<TargetPlan>;
/** A fresh temporary name beside `dst`: `${dst}.tmp-` and 8 random hex digits. */
export declare function tempNameFor(dst: string): string;
/**
 * Carries out a `TargetPlan` for a job that writes a new image (convert, dd):
 * `lock` holds an existing target open (locked) so that a target another
 * process writes is refused before anything is created; `create` makes the
 * image under a temporary name with the target's mode and owner (or in place,
 * where they cannot be given: chown to another user needs root); `finish`
 * renames it over the target; `abandon` removes the temporary file; `release`
 * drops the lock. `onTempFile` hears the temporary name (the blk command
 * removes it when interrupted) and undefined once it is gone.
 */
export declare class TargetWriter {
    private readonly vfs;
    readonly plan: TargetPlan;
    private readonly onTempFile?;
    private tmp;
    private guard;
    private inPlace;
    constructor(vfs: Vfs, plan: TargetPlan, onTempFile?: ((path: string | undefined) => void) | undefined);
    get method(): 'rename' | 'in-place';
    /** Refuses a target another process has open for writing (in place, `create` locks before truncating). */
    lock(): Promise<void>;
    /** Creates the image through `make(path, overwrite)` and returns the path to write it at. */
    create(make: (path: string, overwrite: boolean) => Promise<void>): Promise<string>;
    /** Renames the finished image over the target; returns the temporary name it had (undefined in place). */
    finish(): Promise<string | undefined>;
    /** Removes the temporary file, if any (a failed job). */
    abandon(): Promise<void>;
    release(): Promise<void>;
}
