import { BlockError } from '../errors.js';
import type { FileStat, Storage, Vfs, VfsOpenOptions } from './storage.js';

/**
 * A Vfs made of several, each path going to the one `route` picks (URLs to an HTTP Vfs, a mount to
 * picked files, the rest to local files or OPFS). The calls that name one path are forwarded here;
 * the ones that join names (`resolve`, `resolveBacking`, `cwd`) are the subclass's, since they carry
 * its rules for which name may lead where.
 */
export abstract class RoutingVfs implements Vfs {
  /** The Vfs that holds `path`. */
  protected abstract route(path: string): Vfs;

  abstract resolve(base: string, path: string): string;
  abstract cwd(): string;

  open(path: string, options?: VfsOpenOptions): Promise<Storage> {
    return this.route(path).open(path, options);
  }
  stat(path: string): Promise<FileStat> {
    return this.route(path).stat(path);
  }
  lstat(path: string): Promise<FileStat> {
    return this.route(path).lstat(path);
  }
  realpath(path: string): Promise<string> {
    return this.route(path).realpath(path);
  }
  dirname(path: string): string {
    return this.route(path).dirname(path);
  }
  exists(path: string): Promise<boolean> {
    return this.route(path).exists(path);
  }
  remove(path: string): Promise<void> {
    return this.route(path).remove(path);
  }
  /** Within one routed Vfs only: a rename cannot move a file between them. */
  rename(from: string, to: string): Promise<void> {
    const vfs = this.route(from);
    if (vfs !== this.route(to)) {
      return Promise.reject(
        new BlockError('not-supported', `cannot rename across file systems (${to})`, { path: from }),
      );
    }
    return vfs.rename(from, to);
  }
}
