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
  type CreateOptions,
  type Host,
  type Image,
  type OpenOptions,
  type Vfs,
} from '@blk/images';
import { hostOptionsFromEnvironment } from './environment.js';

/** The formats blk knows, in probe order (frozen: nothing registers into it). */
export const registry: DriverRegistry = new DriverRegistry(builtinDrivers()).freeze();

let host_: Host | undefined;

/** blk's host: `registry`'s formats on the host file system as the environment asks. Made on first use. */
export function cliHost(): Host {
  host_ ??= createHost({ ...hostOptionsFromEnvironment(process.env), drivers: registry });
  return host_;
}

/** The host file system (with OS locks unless BLK_LOCK=off) that blk opens images on. */
export function hostVfs(): Vfs {
  return cliHost().vfs;
}

/** Opens an image on blk's host (probed unless `format` is given). */
export function openImage(path: string, options: OpenOptions = {}): Promise<Image> {
  return cliHost().openImage(path, options);
}

/** Creates an image on blk's host. */
export function createImage(path: string, options: CreateOptions): Promise<void> {
  return cliHost().createImage(path, options);
}
