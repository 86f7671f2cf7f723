import { DriverRegistry, type Vfs, type CreateImageOptions, type Image, type OpenImageOptions } from '@blk/core';
export * from '@blk/core';
export { cowDriver } from '@blk/cow';
export { rawDriver } from '@blk/raw';
/** A new registry holding every built-in format (cow first; raw, the last resort, scores 1). */
export declare function builtinRegistry(): DriverRegistry;
/**
 * The registry `openImage` and `createImage` use here. Register a driver of
 * your own with `registry.register(myDriver)`, and it is probed like the rest.
 */
export declare const registry: DriverRegistry;
/**
 * The host file system with OS advisory locks: writable opens lock the file
 * exclusively, read-only opens shared, so two processes (blk, UML, QEMU) never
 * write one image at once. Reads and writes go through the native addon's
 * pread/pwrite, which cost less per call than Node's fs ones (see @blk/native
 * for the fallback when the addon is missing).
 */
export declare function hostVfs(): Vfs;
export type OpenOptions = Omit<OpenImageOptions, 'registry'> & {
    registry?: DriverRegistry;
};
export type CreateOptions = Omit<CreateImageOptions, 'registry'> & {
    registry?: DriverRegistry;
};
/** Opens an image of any registered format (probed unless `format` is given). */
export declare function openImage(path: string, options?: OpenOptions): Promise<Image>;
/** Creates an image of the given format. */
export declare function createImage(path: string, options: CreateOptions): Promise<void>;
