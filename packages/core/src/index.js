export * from './portable.js';
export { NodeFileStorage } from './node/node-storage.js';
export { NodeVfs } from './node/node-vfs.js';
