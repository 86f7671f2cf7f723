/**
 * The formats the CLI knows: every one registered in @blk/images (cow and
 * raw, plus any a program registers there). The CLI uses only this module
 * and @blk/core's public API to reach images.
 */
export { createImage, hostVfs, openImage, registry } from '@blk/images';
