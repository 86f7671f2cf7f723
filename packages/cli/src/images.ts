/**
 * The formats and host the CLI uses: the built-in formats of @blk/images on
 * the host file system, configured from the environment (BLK_LOCK,
 * BLK_NATIVE_IO, BLK_NATIVE_ADDON: see environment.ts). The CLI reaches
 * images only through this module and @blk/core's public API.
 */
import {
  DriverRegistry,
  builtinDrivers,
  createHost,
  hostSocketSender as imagesSocketSender,
  hostVfs as imagesHostVfs,
  type SocketSender,
  type CreateOptions,
  type Host,
  type Image,
  type OpenOptions,
  type Vfs,
} from '@blk/images';
import { withHttp } from '@blk/http';
import { hostOptionsFromEnvironment, s3OptionsFromEnvironment } from './environment.js';

/**
 * The formats the blk command knows, in probe order: the application's own
 * list (the libraries hold none), which a test of the CLI may extend with a
 * format of its own before it runs a command.
 */
export const registry: DriverRegistry = new DriverRegistry(builtinDrivers());

let vfs_: Vfs | undefined;

/**
 * The host file system (with OS locks unless BLK_LOCK=off) that blk opens images on, with http(s) and s3
 * URLs read through @blk/http (read-only; S3 credentials, region and endpoint from the AWS_* variables).
 * Made on first use.
 */
export function hostVfs(): Vfs {
  vfs_ ??= withHttp(imagesHostVfs(hostOptionsFromEnvironment(process.env)), s3OptionsFromEnvironment(process.env));
  return vfs_;
}

/**
 * The native addon's zero-copy socket sender for blk serve (sendfile from a worker thread), as
 * BLK_NATIVE_IO and BLK_NATIVE_ADDON choose the addon; undefined without it or with BLK_NATIVE_IO=off.
 */
export function hostSocketSender(): SocketSender | undefined {
  return imagesSocketSender(hostOptionsFromEnvironment(process.env));
}

let unlocked_: Vfs | undefined;

/**
 * The host file system WITHOUT OS locks, for a file whose lock its opener holds on a descriptor of
 * its own (blk io, io/same-file.ts). Local files only.
 */
export function unlockedHostVfs(): Vfs {
  unlocked_ ??= imagesHostVfs({ ...hostOptionsFromEnvironment(process.env), lock: 'off' });
  return unlocked_;
}

/** blk's host: `registry`'s formats (as they are now: a host holds a frozen copy) on `hostVfs()`. */
export function cliHost(): Host {
  return createHost({ drivers: registry, vfs: hostVfs() });
}

/** Opens an image on blk's host (probed unless `format` is given). */
export function openImage(path: string, options: OpenOptions = {}): Promise<Image> {
  return cliHost().openImage(path, options);
}

/** Creates an image on blk's host. */
export function createImage(path: string, options: CreateOptions): Promise<void> {
  return cliHost().createImage(path, options);
}
