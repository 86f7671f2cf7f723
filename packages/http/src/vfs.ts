/**
 * HttpVfs: a read-only Vfs whose paths are http(s) URLs, and `withHttp`, a
 * Vfs that sends URLs there and every other path to a local Vfs.
 *
 * Backing names read from a remote image are resolved against the image's
 * URL (`base.cow` naming `base.raw` at http://h/d/ opens http://h/d/base.raw).
 * A remote image can never name a local file: a name resolved against a URL
 * is a URL, and one of another scheme (`file:`, ...) is refused with
 * `backing-forbidden`, as is one on another origin (scheme, host, port)
 * unless `crossOrigin` allows it.
 */
import { BlockError, type FileStat, type Storage, type Vfs, type VfsOpenOptions } from '@blk/core/portable';
import { openS3, isS3Url, type S3Options } from './s3.js';
import { HttpStorage, type HttpStorageOptions } from './storage.js';

/** Options of HttpVfs: those of HttpStorage, and S3's (endpoint, credentials) for `s3://` URLs. */
export interface HttpVfsOptions extends S3Options {
  /** May an image name a backing file on another origin (default false: `backing-forbidden`)? */
  crossOrigin?: boolean;
  /** The URL relative paths given by the user resolve against (default none: only absolute URLs). */
  base?: string;
}

/** Is `path` an http: or https: URL? */
export function isHttpUrl(path: string): boolean {
  return /^https?:\/\//i.test(path);
}

/** Is `path` a URL this package opens (http:, https:, s3:)? */
export function isRemoteUrl(path: string): boolean {
  return /^(https?|s3):\/\//i.test(path);
}

function readOnly(path: string, what: string): BlockError {
  return new BlockError('read-only', `${what}: HTTP URLs are read-only`, { path, code: 'EROFS' });
}

/** Storages opened by `stat`, kept for the `open` of the same URL that follows (one request, not two). */
const KEPT = 8;

export class HttpVfs implements Vfs {
  private readonly kept = new Map<string, Promise<HttpStorage>>();
  /** What the storages this Vfs opened told (a stat after an open costs no request). */
  private readonly known = new Map<string, FileStat>();

  constructor(private readonly options: HttpVfsOptions = {}) {
    if (options.base !== undefined && !isHttpUrl(options.base)) {
      throw new BlockError('invalid-argument', `base ${options.base} is not an http(s) URL`, { field: 'base' });
    }
  }

  private storageOptions(): HttpStorageOptions {
    const {
      crossOrigin: _c,
      base: _b,
      accessKeyId: _a,
      secretAccessKey: _s,
      sessionToken: _t,
      region: _r,
      endpoint: _e,
      addressing: _d,
      ...rest
    } = this.options;
    return rest;
  }

  private openUrl(path: string): Promise<HttpStorage> {
    if (isS3Url(path)) {
      const { crossOrigin: _c, base: _b, ...rest } = this.options;
      return openS3(path, rest);
    }
    return HttpStorage.open(path, this.storageOptions());
  }

  private take(path: string): Promise<HttpStorage> {
    const kept = this.kept.get(path);
    if (kept !== undefined) {
      this.kept.delete(path);
      return kept;
    }
    return this.openUrl(path).then((s) => {
      this.learn(path, s);
      return s;
    });
  }

  private learn(path: string, s: HttpStorage): FileStat {
    const modified = s.lastModified !== undefined ? Date.parse(s.lastModified) : Number.NaN;
    const st: FileStat = {
      size: s.contentLength,
      mtimeSec: Number.isFinite(modified) ? Math.floor(modified / 1000) : 0,
      isFile: true,
      isDirectory: false,
      isSymbolicLink: false,
      type: 'file',
    };
    this.known.delete(path);
    this.known.set(path, st);
    while (this.known.size > KEPT) this.known.delete(this.known.keys().next().value as string);
    return st;
  }

  async open(path: string, options: VfsOpenOptions = {}): Promise<Storage> {
    if (options.create || options.truncate || options.readOnly === false)
      throw readOnly(path, 'cannot open for writing');
    return this.take(path);
  }

  async stat(path: string): Promise<FileStat> {
    const known = this.known.get(path);
    if (known !== undefined) return { ...known };
    // The first request of the open that follows: kept for it.
    const storage = this.take(path);
    this.kept.set(path, storage);
    while (this.kept.size > KEPT) {
      const oldest = this.kept.keys().next().value as string;
      this.kept
        .get(oldest)
        ?.then((s) => s.close())
        .catch(() => undefined);
      this.kept.delete(oldest);
    }
    try {
      return { ...this.learn(path, await storage) };
    } catch (err) {
      this.kept.delete(path);
      throw err;
    }
  }

  lstat(path: string): Promise<FileStat> {
    return this.stat(path);
  }

  async realpath(path: string): Promise<string> {
    return new URL(path).href;
  }

  resolve(base: string, path: string): string {
    if (base === this.cwd() || !isRemoteUrl(base)) {
      // A path the user gave: an absolute URL, or relative to `base` when one is configured.
      if (isRemoteUrl(path)) return new URL(path).href;
      if (this.options.base === undefined) {
        throw new BlockError('invalid-argument', 'not an http(s) URL', { path });
      }
      return new URL(path, this.options.base).href;
    }
    // A name read from an image at `base`: data, never instructions.
    let url: URL;
    try {
      url = new URL(path, base.endsWith('/') ? base : `${base}/`);
    } catch {
      throw new BlockError('backing-forbidden', `backing name ${path} cannot be resolved against ${base}`, {
        path: base,
      });
    }
    if (url.protocol !== 'http:' && url.protocol !== 'https:') {
      throw new BlockError('backing-forbidden', `a remote image cannot name ${url.protocol} files (${path})`, {
        path: base,
      });
    }
    const origin = new URL(base).origin;
    if (url.origin !== origin && this.options.crossOrigin !== true) {
      throw new BlockError(
        'backing-forbidden',
        `backing file ${url.href} is on another origin than ${origin} (allow with crossOrigin)`,
        { path: base },
      );
    }
    return url.href;
  }

  dirname(path: string): string {
    const url = new URL(path);
    url.search = '';
    url.hash = '';
    const href = url.href;
    return href.slice(0, href.lastIndexOf('/') + 1);
  }

  cwd(): string {
    return this.options.base ?? '';
  }

  async exists(path: string): Promise<boolean> {
    try {
      await this.stat(path);
      return true;
    } catch (err) {
      if (err instanceof BlockError && err.code === 'ENOENT') return false;
      throw err;
    }
  }

  async remove(path: string): Promise<void> {
    throw readOnly(path, 'cannot remove');
  }

  async rename(from: string): Promise<void> {
    throw readOnly(from, 'cannot rename');
  }
}

/**
 * A Vfs where http(s) URLs go to `http` and every other path to `local`. A
 * name read from a remote image resolves against its URL (never to a local
 * path); a local image cannot name a URL (`backing-forbidden`): only the
 * user opens URLs.
 */
export class UrlRoutingVfs implements Vfs {
  constructor(
    readonly local: Vfs,
    readonly http: Vfs = new HttpVfs(),
  ) {}

  private of(path: string): Vfs {
    return isRemoteUrl(path) ? this.http : this.local;
  }

  open(path: string, options?: VfsOpenOptions): Promise<Storage> {
    return this.of(path).open(path, options);
  }
  stat(path: string): Promise<FileStat> {
    return this.of(path).stat(path);
  }
  lstat(path: string): Promise<FileStat> {
    return this.of(path).lstat(path);
  }
  realpath(path: string): Promise<string> {
    return this.of(path).realpath(path);
  }
  resolve(base: string, path: string): string {
    if (isRemoteUrl(base)) return this.http.resolve(base, path);
    if (isRemoteUrl(path)) {
      // A URL the user typed (resolved against cwd()) stays a URL; one read from a local image is refused,
      // so that an image from a stranger cannot make blk send requests.
      if (base === this.cwd()) return this.http.resolve(this.http.cwd(), path);
      throw new BlockError('backing-forbidden', `a local image cannot name a URL (${path}) as a file to open`, {
        path: base,
      });
    }
    return this.local.resolve(base, path);
  }
  dirname(path: string): string {
    return this.of(path).dirname(path);
  }
  /**
   * The local current directory, spelled with a final `/.` (the same directory): what the core resolves
   * paths the user typed against, which no `dirname` of an image returns, so `resolve` tells a URL the
   * user typed from one a local image names.
   */
  cwd(): string {
    const cwd = this.local.cwd();
    return cwd.endsWith('/') ? `${cwd}.` : `${cwd}/.`;
  }
  exists(path: string): Promise<boolean> {
    return this.of(path).exists(path);
  }
  remove(path: string): Promise<void> {
    return this.of(path).remove(path);
  }
  rename(from: string, to: string): Promise<void> {
    if (isRemoteUrl(from) || isRemoteUrl(to)) return this.http.rename(from, to);
    return this.local.rename(from, to);
  }
  setAttributes(path: string, attributes: Parameters<NonNullable<Vfs['setAttributes']>>[1]): Promise<void> {
    if (isRemoteUrl(path)) return Promise.reject(readOnly(path, 'cannot set attributes'));
    if (!this.local.setAttributes) return Promise.resolve();
    return this.local.setAttributes(path, attributes);
  }
}

/** `local` with http(s) URLs opened through an HttpVfs made with `options`. */
export function withHttp(local: Vfs, options: HttpVfsOptions = {}): Vfs {
  return new UrlRoutingVfs(local, new HttpVfs(options));
}
