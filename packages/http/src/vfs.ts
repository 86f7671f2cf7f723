/**
 * HttpVfs: a read-only Vfs whose paths are http(s) URLs, and `withHttp`, a
 * Vfs that sends URLs there and every other path to a local Vfs.
 *
 * Backing names read from a remote image are resolved against the image's
 * URL (`base.cow` naming `base.raw` at http://h/d/ opens http://h/d/base.raw;
 * `Vfs.resolveBacking`). Which of them may be opened is the core's backing
 * policy's call (`BackingPolicy.allowOrigins`): by default a remote image names
 * only files below its own directory on its own origin, never a local file
 * or another host, and a local image names no URL.
 */
import { BlockError, RoutingVfs, type FileStat, type Storage, type Vfs, type VfsOpenOptions } from '@blk/core/portable';
import { openS3, isS3Url, type S3Options } from './s3.js';
import { HttpStorage, type HttpStorageOptions } from './storage.js';

/** Options of HttpVfs: those of HttpStorage, and S3's (endpoint, credentials) for `s3://` URLs. */
export interface HttpVfsOptions extends S3Options {
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
      const { base: _b, ...rest } = this.options;
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

  /** A path the caller gave: an absolute URL, or one relative to the `base` option when it is set. */
  resolve(base: string, path: string): string {
    if (isRemoteUrl(path)) return new URL(path).href;
    const against = isRemoteUrl(base) ? base : this.options.base;
    if (against === undefined) throw new BlockError('invalid-argument', 'not an http(s) or s3 URL', { path });
    return new URL(path, against.endsWith('/') ? against : `${against}/`).href;
  }

  /**
   * A name read from the image at `imagePath` (data, never instructions): resolved against the image's
   * URL, whatever it names (`/x` is the server's /x, `file:///x` stays a file URL); whether it may be
   * opened is the backing policy's call (BackingPolicy.allowOrigins).
   */
  resolveBacking(imagePath: string, name: string): string {
    try {
      return new URL(name, imagePath).href;
    } catch {
      throw new BlockError('backing-forbidden', `backing name ${name} cannot be resolved against ${imagePath}`, {
        path: imagePath,
      });
    }
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

/** The local path of a `file:` URL (only `file:///...`, no host). */
function fileUrlPath(href: string, imagePath: string): string {
  const url = new URL(href);
  if (url.host !== '' && url.host !== 'localhost') {
    throw new BlockError('backing-forbidden', `backing name ${href} names a file on another host`, { path: imagePath });
  }
  return decodeURIComponent(url.pathname);
}

/**
 * A Vfs where http(s) URLs go to `http` and every other path to `local`. A
 * name read from a remote image resolves against its URL (never to a local
 * path); a local image cannot name a URL (`backing-forbidden`): only the
 * user opens URLs.
 */
export class UrlRoutingVfs extends RoutingVfs {
  constructor(
    readonly local: Vfs,
    readonly http: Vfs = new HttpVfs(),
  ) {
    super();
  }

  protected route(path: string): Vfs {
    return isRemoteUrl(path) ? this.http : this.local;
  }

  /** A path the user gave: a URL stays a URL; any other path is the local Vfs's. */
  resolve(base: string, path: string): string {
    if (isRemoteUrl(path) || isRemoteUrl(base)) return this.http.resolve(base, path);
    return this.local.resolve(base, path);
  }
  /**
   * A name read from an image: against the image's URL for a remote image (a `file:` URL it names
   * becomes a local path), against its directory for a local one (where a URL stays a URL). The
   * backing policy decides which origins may be opened (BackingPolicy.allowOrigins).
   */
  resolveBacking(imagePath: string, name: string): string {
    if (isRemoteUrl(imagePath)) {
      const href = this.http.resolveBacking
        ? this.http.resolveBacking(imagePath, name)
        : this.http.resolve(this.http.dirname(imagePath), name);
      return /^file:\/\//i.test(href) ? fileUrlPath(href, imagePath) : href;
    }
    if (isRemoteUrl(name)) return this.http.resolve(this.http.cwd(), name);
    return this.local.resolveBacking
      ? this.local.resolveBacking(imagePath, name)
      : this.local.resolve(this.local.dirname(imagePath), name);
  }
  cwd(): string {
    return this.local.cwd();
  }
  /** A URL is read-only: renaming to or from one is the HTTP Vfs's refusal, not a cross-device one. */
  override rename(from: string, to: string): Promise<void> {
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
