export * from './portable.js';
export { NodeFileStorage, type NodeIoMode, type NodeFileStorageOptions } from './node-storage.js';
export { NodeVfs } from './node-vfs.js';
