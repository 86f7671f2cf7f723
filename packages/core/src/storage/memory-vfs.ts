import { BlockError } from '../errors.js';
import { MemoryFile, MemoryStorage } from './memory-storage.js';
import { dirnamePosix, normalizePosix, resolvePosix } from '../posix-path.js';
import type { FileStat, Storage, Vfs, VfsOpenOptions } from './storage.js';

/**
 * An in-memory name space of files (and symlinks), for tests and for
 * browser-side use. Directories exist implicitly.
 */
export class MemoryVfs implements Vfs {
  readonly files = new Map<string, MemoryFile>();
  readonly links = new Map<string, string>();

  constructor(private readonly cwdPath = '/') {}

  /** Puts a file in place (replacing any) and returns it. */
  put(path: string, content: Uint8Array | MemoryFile = new Uint8Array()): MemoryFile {
    const file = content instanceof MemoryFile ? content : new MemoryFile(content);
    this.files.set(this.abs(path), file);
    return file;
  }

  symlink(target: string, path: string): void {
    this.links.set(this.abs(path), target);
  }

  file(path: string): MemoryFile {
    const file = this.files.get(this.follow(this.abs(path)));
    if (!file) throw this.missing(path);
    return file;
  }

  async open(path: string, options: VfsOpenOptions = {}): Promise<Storage> {
    const abs = this.follow(this.abs(path));
    let file = this.files.get(abs);
    if (file && options.create && options.exclusive) {
      throw new BlockError('exists', 'file exists', { path, code: 'EEXIST' });
    }
    if (!file) {
      if (!options.create) throw this.missing(path);
      file = new MemoryFile();
      this.files.set(abs, file);
    } else if (options.truncate) {
      file.truncate(0);
    }
    return new MemoryStorage(file, path, options.readOnly ?? false);
  }

  async stat(path: string): Promise<FileStat> {
    const abs = this.follow(this.abs(path));
    return this.statResolved(abs, path, false);
  }

  async lstat(path: string): Promise<FileStat> {
    const abs = this.abs(path);
    if (this.links.has(abs)) {
      return { size: 0, mtimeSec: 0, isFile: false, isDirectory: false, isSymbolicLink: true };
    }
    return this.statResolved(abs, path, false);
  }

  async realpath(path: string): Promise<string> {
    const abs = this.follow(this.abs(path));
    if (!this.files.has(abs) && !this.isDir(abs)) throw this.missing(path);
    return abs;
  }

  resolve(base: string, path: string): string {
    return resolvePosix(resolvePosix(this.cwdPath, base), path);
  }

  dirname(path: string): string {
    return dirnamePosix(path);
  }

  cwd(): string {
    return this.cwdPath;
  }

  async exists(path: string): Promise<boolean> {
    const abs = this.follow(this.abs(path));
    return this.files.has(abs) || this.isDir(abs);
  }

  async remove(path: string): Promise<void> {
    const abs = this.abs(path);
    if (!this.links.delete(abs) && !this.files.delete(abs)) throw this.missing(path);
  }

  async rename(from: string, to: string): Promise<void> {
    const file = this.files.get(this.abs(from));
    if (!file) throw this.missing(from);
    this.files.delete(this.abs(from));
    this.files.set(this.abs(to), file);
  }

  private statResolved(abs: string, path: string, _link: boolean): FileStat {
    const file = this.files.get(abs);
    if (file) {
      return { size: file.length, mtimeSec: file.mtimeSec, isFile: true, isDirectory: false, isSymbolicLink: false };
    }
    if (this.isDir(abs)) {
      return { size: 0, mtimeSec: 0, isFile: false, isDirectory: true, isSymbolicLink: false };
    }
    throw this.missing(path);
  }

  private isDir(abs: string): boolean {
    const prefix = abs === '/' ? '/' : `${abs}/`;
    for (const name of this.files.keys()) if (name.startsWith(prefix)) return true;
    return false;
  }

  /** Resolves symlinks in every component (bounded, so a symlink loop is an error, not a hang). */
  private follow(abs: string): string {
    let current = abs;
    for (let hops = 0; hops < 40; hops++) {
      const parts = current.split('/').filter((p) => p !== '');
      let prefix = '';
      let changed = false;
      for (let i = 0; i < parts.length; i++) {
        prefix = `${prefix}/${parts[i]}`;
        const target = this.links.get(prefix);
        if (target !== undefined) {
          const rest = parts.slice(i + 1).join('/');
          const resolved = resolvePosix(dirnamePosix(prefix), target);
          current = normalizePosix(rest ? `${resolved}/${rest}` : resolved);
          changed = true;
          break;
        }
      }
      if (!changed) return current;
    }
    throw new BlockError('io', 'too many levels of symbolic links', { path: abs, code: 'ELOOP' });
  }

  private abs(path: string): string {
    return resolvePosix(this.cwdPath, path);
  }

  private missing(path: string): BlockError {
    return new BlockError('io', 'no such file or directory', { path, code: 'ENOENT' });
  }
}
