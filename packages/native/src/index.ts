/**
 * @blk/native: the host system calls blk needs that Node lacks or makes slow,
 * in one small Node-API addon (native/*.c) built at install time.
 * - lock: OS advisory locks on image files (LockingVfs, lockStorage, lockFd).
 * - io: positional reads and writes without Node's per-call overhead (nativeSyscalls).
 * - send: socket replies by sendfile from a worker thread (nativeSocketSender, for @blk/nbd).
 * Without the addon both fall back (no locks, with a warning; Node's fs calls).
 */
export * from './lock.js';
export { nativeSyscalls, type NativeIoOptions } from './io.js';
export { nativeSocketSender, type NativeSendOptions, type SocketSender } from './send.js';
export { addonLoadError } from './addon.js';
