/**
 * @blk/images: the built-in formats on the host file system. Nothing here is
 * shared mutable state: `createHost` makes a host of your own (with drivers of
 * your own among the built-in ones), and `openImage`/`createImage` are sugar
 * over a default host that nobody can change (its registry is frozen).
 */
import {
  NodeVfs,
  createHost as coreCreateHost,
  type BlockDriver,
  type Host,
  type HostCreateOptions,
  type HostOpenOptions,
  type HostOptions,
  type Image,
  type Vfs,
} from '@blk/core';
import { cowDriver } from '@blk/cow';
import { LockingVfs, nativeSocketSender, nativeSyscalls, type LockPolicy, type SocketSender } from '@blk/native';
import { qcow2Driver } from '@blk/qcow2';
import { rawDriver } from '@blk/raw';

export * from '@blk/core';
export { cowDriver } from '@blk/cow';
export { qcow2Driver } from '@blk/qcow2';
export { rawDriver } from '@blk/raw';
export type { LockPolicy, LockMode, SocketSender } from '@blk/native';
/** For a program that holds a file's lock on a descriptor of its own (blk io's reopen keeps it across the switch). */
export { lockFd, unlockFd } from '@blk/native';

/** The built-in formats in probe order: cow, qcow2; raw, the last resort, scores 1. A new array each call. */
export function builtinDrivers(): BlockDriver[] {
  return [cowDriver, qcow2Driver, rawDriver];
}

/**
 * How the host file system is reached. The library reads no environment
 * variable: the blk command turns BLK_LOCK, BLK_NATIVE_IO and BLK_NATIVE_ADDON
 * into these options.
 */
export interface HostVfsOptions {
  /** OS advisory locks: `on` (default), `off`, or `require` (fail without the addon). */
  lock?: LockPolicy;
  /** Use the native addon's pread/pwrite/lseek (default true); false: Node's fs calls. */
  nativeIo?: boolean;
  /** Another build of the native addon to load (default: the one built with @blk/native). */
  addon?: string;
}

/**
 * The host file system with OS advisory locks: writable opens lock the file
 * exclusively, read-only opens shared, so two processes (blk, UML, QEMU) never
 * write one image at once. Reads and writes go through the native addon's
 * pread/pwrite, which cost less per call than Node's fs ones (see @blk/native
 * for the fallback when the addon is missing). A new Vfs each call.
 */
export function hostVfs(options: HostVfsOptions = {}): Vfs {
  const io: { enabled?: boolean; addon?: string } = {};
  if (options.nativeIo !== undefined) io.enabled = options.nativeIo;
  if (options.addon !== undefined) io.addon = options.addon;
  const lock: { policy?: LockPolicy; addon?: string } = {};
  if (options.lock !== undefined) lock.policy = options.lock;
  if (options.addon !== undefined) lock.addon = options.addon;
  return new LockingVfs(new NodeVfs({ syscalls: nativeSyscalls(io) }), lock);
}

/**
 * The native addon's zero-copy socket sender (sendfile from a worker thread; @blk/nbd's
 * `ListenOptions.zeroCopy`), as the same options choose the addon: undefined without it or with
 * `nativeIo: false` (then an NBD server reads and writes replies itself, as before).
 */
export function hostSocketSender(options: HostVfsOptions = {}): SocketSender | undefined {
  return nativeSocketSender({
    ...(options.nativeIo !== undefined ? { enabled: options.nativeIo } : {}),
    ...(options.addon !== undefined ? { addon: options.addon } : {}),
  });
}

/** createHost's options here: drivers default to the built-in ones, the vfs to `hostVfs(options)`. */
export type ImagesHostOptions = Partial<HostOptions> & HostVfsOptions;

/**
 * A host (see core's `createHost`) with the built-in formats on the host file
 * system, unless told otherwise. A driver of your own:
 * `createHost({ drivers: [...builtinDrivers(), myDriver] })`.
 */
export function createHost(options: ImagesHostOptions = {}): Host {
  const { lock, nativeIo, addon, drivers, vfs, ...rest } = options;
  const vfsOptions: HostVfsOptions = {};
  if (lock !== undefined) vfsOptions.lock = lock;
  if (nativeIo !== undefined) vfsOptions.nativeIo = nativeIo;
  if (addon !== undefined) vfsOptions.addon = addon;
  return coreCreateHost({ ...rest, drivers: drivers ?? builtinDrivers(), vfs: vfs ?? hostVfs(vfsOptions) });
}

let defaultHost_: Host | undefined;

/**
 * The host `openImage` and `createImage` use: the built-in formats on
 * `hostVfs()`. Made on first use and never changed (its registry is frozen).
 */
export function defaultHost(): Host {
  defaultHost_ ??= createHost();
  return defaultHost_;
}

export type OpenOptions = HostOpenOptions;
export type CreateOptions = HostCreateOptions;

/** Opens an image of a built-in format (probed unless `format` is given) on the default host. */
export function openImage(path: string, options: OpenOptions = {}): Promise<Image> {
  return defaultHost().openImage(path, options);
}

/** Creates an image of a built-in format on the default host. */
export function createImage(path: string, options: CreateOptions): Promise<void> {
  return defaultHost().createImage(path, options);
}
