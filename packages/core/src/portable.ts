/**
 * The portable part of @blk/core: everything but the Node file system
 * (no node:* imports), for browsers and other runtimes.
 */
export * from './errors.js';
export * from './checks.js';
export * from './storage/storage.js';
export * from './format/driver.js';
export * from './format/registry.js';
export * from './format/signatures.js';
export * from './format/metadata-cache.js';
export * from './image/request-tracker.js';
export * from './image/image.js';
export { deriveCapabilities, refuseWritableOpen } from './image/capabilities.js';
export { ChainCursor } from './image/chain-cursor.js';
export * from './image/backing-policy.js';
export * from './image/open.js';
export * from './host/host.js';
export { MemoryFile, MemoryStorage } from './storage/memory-storage.js';
export { MemoryVfs } from './storage/memory-vfs.js';
export { ForwardingVfs } from './storage/forwarding-vfs.js';
export { RoutingVfs } from './storage/routing-vfs.js';
export { FilterStorage } from './storage/filter-storage.js';
export { normalizePosix, resolvePosix, dirnamePosix } from './posix-path.js';
export { invalidArgument } from './arguments.js';
