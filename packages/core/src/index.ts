export * from './portable.js';
export { NodeFileStorage, type NodeIoMode, type NodeFileStorageOptions, type PositionalSyscalls } from './node-storage.js';
export { NodeVfs, type NodeVfsOptions } from './node-vfs.js';
