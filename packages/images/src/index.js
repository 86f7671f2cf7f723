import { DriverRegistry, NodeVfs, createImage as coreCreateImage, openImage as coreOpenImage, } from '@blk/core';
import { cowDriver } from '@blk/cow';
import { LockingVfs, nativeSyscalls } from '@blk/native';
import { rawDriver } from '@blk/raw';
export * from '@blk/core';
export { cowDriver } from '@blk/cow';
export { rawDriver } from '@blk/raw';
/** A new registry holding every built-in format (cow first; raw, the last resort, scores 1). */
export function builtinRegistry() {
    return new DriverRegistry([cowDriver, rawDriver]);
}
/**
 * The registry `openImage` and `createImage` use here. Register a driver of
 * your own with `registry.register(myDriver)`, and it is probed like the rest.
 */
export const registry = builtinRegistry();
let hostVfs_;
/**
 * The host file system with OS advisory locks: writable opens lock the file
 * exclusively, read-only opens shared, so two processes (blk, UML, QEMU) never
 * write one image at once. Reads and writes go through the native addon's
 * pread/pwrite, which cost less per call than Node's fs ones (see @blk/native
 * for the fallback when the addon is missing).
 */
export function hostVfs() {
    hostVfs_ ??= new LockingVfs(new NodeVfs({ syscalls: nativeSyscalls() }));
    return hostVfs_;
}
/** Opens an image of any registered format (probed unless `format` is given). */
export function openImage(path, options = {}) {
    return coreOpenImage(path, { ...options, registry: options.registry ?? registry, vfs: options.vfs ?? hostVfs() });
}
/** Creates an image of the given format. */
export function createImage(path, options) {
    return coreCreateImage(path, { ...options, registry: options.registry ?? registry, vfs: options.vfs ?? hostVfs() });
}
