import type { FileAttributes, FileStat, Storage, Vfs, VfsOpenOptions } from './storage.js';

/**
 * A Vfs that passes every call to another. Wrappers (locking, fault
 * injection, crash simulation, tracing) extend it and override only what
 * they change, usually `open`.
 */
export class ForwardingVfs implements Vfs {
  constructor(readonly inner: Vfs) {}

  open(path: string, options?: VfsOpenOptions): Promise<Storage> {
    return this.inner.open(path, options);
  }
  stat(path: string): Promise<FileStat> {
    return this.inner.stat(path);
  }
  lstat(path: string): Promise<FileStat> {
    return this.inner.lstat(path);
  }
  realpath(path: string): Promise<string> {
    return this.inner.realpath(path);
  }
  resolve(base: string, path: string): string {
    return this.inner.resolve(base, path);
  }
  dirname(path: string): string {
    return this.inner.dirname(path);
  }
  cwd(): string {
    return this.inner.cwd();
  }
  exists(path: string): Promise<boolean> {
    return this.inner.exists(path);
  }
  remove(path: string): Promise<void> {
    return this.inner.remove(path);
  }
  rename(from: string, to: string): Promise<void> {
    return this.inner.rename(from, to);
  }
  /** Present when the inner Vfs has it (see Vfs.resolveBacking). */
  get resolveBacking(): ((imagePath: string, name: string) => string) | undefined {
    const inner = this.inner;
    return inner.resolveBacking ? (imagePath, name) => inner.resolveBacking!(imagePath, name) : undefined;
  }
  /** Present when the inner Vfs has it (see Vfs.setAttributes). */
  get setAttributes(): ((path: string, attributes: FileAttributes) => Promise<void>) | undefined {
    const inner = this.inner;
    return inner.setAttributes ? (path, attributes) => inner.setAttributes!(path, attributes) : undefined;
  }
}
