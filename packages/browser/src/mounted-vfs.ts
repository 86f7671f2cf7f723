/**
 * What the browser's name spaces (picked files, OPFS) share: a mount point in blk's POSIX-style
 * paths, names resolved below it, no symbolic links. Subclasses say how a name is found.
 */
import {
  BlockError,
  dirnamePosix,
  resolvePosix,
  type FileStat,
  type Storage,
  type Vfs,
  type VfsOpenOptions,
} from '@blk/core/portable';

export abstract class MountedVfs implements Vfs {
  /** Where this name space appears in blk's paths (absolute, normalised). */
  readonly mount: string;

  protected constructor(mount: string) {
    this.mount = resolvePosix('/', mount);
  }

  /** Whether the absolute path `abs` is the mount or below it (a mount of `/` holds every path). */
  protected isUnderMount(abs: string): boolean {
    return abs === this.mount || abs.startsWith(this.mount === '/' ? '/' : `${this.mount}/`);
  }

  /** `path` made absolute against the mount; a path outside it is `io` ENOENT with `outside` as the message. */
  protected underMount(path: string, outside: string): string {
    const abs = resolvePosix(this.mount, path);
    if (!this.isUnderMount(abs)) throw new BlockError('io', outside, { path, code: 'ENOENT' });
    return abs;
  }

  /** Finds `path` or throws (ENOENT when it does not exist); `exists` asks this. Defaults to `stat`. */
  protected lookup(path: string): Promise<unknown> {
    return this.stat(path);
  }

  abstract open(path: string, options?: VfsOpenOptions): Promise<Storage>;
  abstract stat(path: string): Promise<FileStat>;
  abstract realpath(path: string): Promise<string>;
  abstract remove(path: string): Promise<void>;
  abstract rename(from: string, to: string): Promise<void>;

  /** There are no symbolic links here. */
  lstat(path: string): Promise<FileStat> {
    return this.stat(path);
  }

  resolve(base: string, path: string): string {
    return resolvePosix(resolvePosix(this.mount, base), path);
  }

  dirname(path: string): string {
    return dirnamePosix(path);
  }

  /** Relative names are below the mount. */
  cwd(): string {
    return this.mount;
  }

  /** False only for a missing name (ENOENT); any other failure is thrown, not taken for absence. */
  async exists(path: string): Promise<boolean> {
    try {
      await this.lookup(path);
      return true;
    } catch (err) {
      if (err instanceof BlockError && err.code === 'ENOENT') return false;
      throw err;
    }
  }
}
