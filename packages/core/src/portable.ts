/**
 * The portable part of @blk/core: everything but the Node file system
 * (no node:* imports), for browsers and other runtimes.
 */
export * from './errors.js';
export * from './checks.js';
export * from './storage.js';
export * from './driver.js';
export * from './registry.js';
export * from './signatures.js';
export * from './request-tracker.js';
export * from './image.js';
export { ChainCursor } from './chain-cursor.js';
export * from './backing-policy.js';
export * from './open.js';
export { MemoryFile, MemoryStorage } from './memory-storage.js';
export { MemoryVfs } from './memory-vfs.js';
export { ForwardingVfs } from './forwarding-vfs.js';
export { normalizePosix, resolvePosix, dirnamePosix } from './posix-path.js';
export { invalidArgument } from './arguments.js';
