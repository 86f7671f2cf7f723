/**
 * The Node entry's openImage and createImage: core's, with the host file
 * system (NodeVfs) when no `vfs` is given. The portable entry has no such
 * default (a browser has no host file system), so that it never imports node:fs.
 */
import {
  createImage as portableCreateImage,
  openImage as portableOpenImage,
  type CreateImageOptions as PortableCreateImageOptions,
  type OpenImageOptions as PortableOpenImageOptions,
} from '../image/open.js';
import type { Image } from '../image/image.js';
import { NodeVfs } from './node-vfs.js';

/** openImage's options; `vfs` defaults to the host file system (a new NodeVfs). */
export type OpenImageOptions = Omit<PortableOpenImageOptions, 'vfs'> & { vfs?: PortableOpenImageOptions['vfs'] };
/** createImage's options; `vfs` defaults to the host file system (a new NodeVfs). */
export type CreateImageOptions = Omit<PortableCreateImageOptions, 'vfs'> & { vfs?: PortableCreateImageOptions['vfs'] };

/** Core's openImage (see @blk/core/portable), on NodeVfs unless `options.vfs` names another. */
export function openImage(path: string, options: OpenImageOptions): Promise<Image> {
  return portableOpenImage(path, withVfs(options));
}

/** Core's createImage (see @blk/core/portable), on NodeVfs unless `options.vfs` names another. */
export function createImage(path: string, options: CreateImageOptions): Promise<void> {
  return portableCreateImage(path, withVfs(options));
}

function withVfs<T extends { vfs?: PortableOpenImageOptions['vfs'] }>(
  options: T,
): T & { vfs: PortableOpenImageOptions['vfs'] } {
  // A non-object is left to the portable checks (invalid-argument naming the option).
  if (typeof options !== 'object' || options === null || options.vfs !== undefined)
    return options as T & { vfs: never };
  return { ...options, vfs: new NodeVfs() };
}
