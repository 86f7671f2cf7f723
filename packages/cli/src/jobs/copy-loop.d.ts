/**
 * The copy loop of convert (new target and `-n`, an existing one): reads the
 * source chunk by chunk, several chunks in flight, and writes what the target
 * must hold. Runs that read as zeros are skipped when the target reads zeros
 * there already, and made zeros with Image.writeZeroes (unmap allowed, as
 * qemu-img) where it does not; with something to compare against (a -B
 * backing file, or the existing target itself under `-n`), only granules of
 * data that differ from it are written.
 *
 * Write order (qemu-img convert's -W): by default each chunk's writes start
 * only once the previous chunk's writes have completed, so that the target
 * fills from front to back (reads still run ahead); `outOfOrder` lets every
 * chunk write as soon as it has read.
 */
import type { Image } from '@blk/core';
export interface CopyLoopOptions {
    /** I/O unit (bytes). */
    chunk: number;
    /** Chunks in flight (qemu-img's -m, coroutines). */
    depth: number;
    /** Aligned zero granules at least this long are not written (0: write every byte). */
    sparseSize: number;
    /**
     * What the target reads already where the loop writes nothing: a backing
     * file (-B) or the target itself (-n). Granules equal to it are skipped.
     * Undefined: the target reads zeros everywhere (a new image, or -n with
     * --target-is-zero).
     */
    against?: Image;
    /** Write every byte of every run (no hole, no compare): -S 0 without `against`, or a device. */
    writeAll?: boolean;
    /** -W: chunks write as soon as they are read, in any order. */
    outOfOrder?: boolean;
    /** Called with the bytes gone through so far. */
    onProgress?: (done: number) => void;
}
/** Copies `source` (its whole virtual size) into `target` at the same offsets. */
export declare function copyImageData(source: Image, target: Image, o: CopyLoopOptions): Promise<void>;
