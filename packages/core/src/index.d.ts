export * from './portable.js';
export { NodeFileStorage, type NodeIoMode, type NodeFileStorageOptions, type PositionalSyscalls } from './node/node-storage.js';
export { NodeVfs, type NodeVfsOptions } from './node/node-vfs.js';
