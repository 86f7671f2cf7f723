export * from './portable.js';
export {
  NodeFileStorage,
  type NodeIoMode,
  type NodeFileStorageOptions,
  type PositionalSyscalls,
} from './node/node-storage.js';
export { NodeVfs, type NodeVfsOptions } from './node/node-vfs.js';
// The Node defaults: openImage/createImage without a vfs open files on NodeVfs (these shadow portable's).
export { openImage, createImage, type OpenImageOptions, type CreateImageOptions } from './node/open-node.js';
