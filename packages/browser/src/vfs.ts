/**
 * `BrowserVfs`: one name space for a page or worker: OPFS under `/opfs`,
 * picked files (Blobs) under `/files`, and http(s) URLs through @blk/http.
 *
 * What an image may name as its backing file (names read from images are
 * data, never instructions):
 * - an OPFS image: OPFS files, picked files, and URLs on the origins listed
 *   in `backingOrigins` (default: the page's own origin); another origin is
 *   `backing-forbidden`;
 * - a picked file: only picked files (it cannot reach OPFS or the network);
 * - a remote image: URLs on its own origin (HttpVfs's rule), never a local file.
 * The open's `BackingPolicy` (approve, maxDepth, ...) applies on top.
 */
import { BlockError, RoutingVfs, resolvePosix, type Vfs } from '@blk/core/portable';
import { HttpVfs, isHttpUrl, type HttpVfsOptions } from '@blk/http';
import { BlobVfs } from './blob.js';
import { OpfsVfs } from './opfs.js';

export interface BrowserVfsOptions {
  /** The OPFS Vfs (default `new OpfsVfs()`, mounted at `/opfs`). */
  opfs?: OpfsVfs;
  /** The picked files (default `new BlobVfs()`, mounted at `/files`). */
  files?: BlobVfs;
  /** The HTTP Vfs, or options for one (default `new HttpVfs()`). */
  http?: HttpVfs | HttpVfsOptions;
  /**
   * Origins (`https://host:port`) whose URLs an OPFS image may name as its
   * backing file. Default: the origin of the page (`location.origin`), when
   * there is one. `'*'` allows any http(s) origin.
   */
  backingOrigins?: readonly string[];
}

function within(mount: string, path: string): boolean {
  return path === mount || path.startsWith(mount === '/' ? '/' : `${mount}/`);
}

export class BrowserVfs extends RoutingVfs {
  readonly opfs: OpfsVfs;
  readonly files: BlobVfs;
  readonly http: HttpVfs;
  readonly backingOrigins: readonly string[];

  constructor(options: BrowserVfsOptions = {}) {
    super();
    this.opfs = options.opfs ?? new OpfsVfs();
    this.files = options.files ?? new BlobVfs();
    this.http = options.http instanceof HttpVfs ? options.http : new HttpVfs(options.http ?? {});
    const here = (globalThis as { location?: { origin?: string } }).location?.origin;
    this.backingOrigins = options.backingOrigins ?? (here && here !== 'null' ? [here] : []);
    if (within(this.opfs.mount, this.files.mount) || within(this.files.mount, this.opfs.mount)) {
      throw new BlockError('invalid-argument', 'the OPFS and file mounts overlap', { field: 'files' });
    }
  }

  protected route(path: string): Vfs {
    if (isHttpUrl(path)) return this.http;
    const abs = resolvePosix('/', path);
    return within(this.files.mount, abs) ? this.files : this.opfs;
  }

  private forbidden(base: string, what: string): BlockError {
    return new BlockError('backing-forbidden', what, { path: base });
  }

  /** A path the caller gave (Vfs.resolve): URLs as given, relative names under `base` (the OPFS mount from cwd()). */
  resolve(base: string, path: string): string {
    if (isHttpUrl(base)) return this.http.resolve(base, path);
    if (isHttpUrl(path)) return this.http.resolve(this.http.cwd(), path);
    return resolvePosix(resolvePosix('/', base), path);
  }

  /**
   * A backing name read from the image at `imagePath` (Vfs.resolveBacking): relative to the image's
   * directory; a picked file may name only picked files and no URL; an OPFS image may name URLs only
   * on `backingOrigins` (the core's backing policy checks origins again: browserHost gives it these).
   */
  resolveBacking(imagePath: string, name: string): string {
    if (isHttpUrl(imagePath)) {
      return this.http.resolveBacking
        ? this.http.resolveBacking(imagePath, name)
        : this.http.resolve(this.http.dirname(imagePath), name);
    }
    const dir = resolvePosix('/', this.dirname(imagePath));
    const picked = within(this.files.mount, dir);
    if (isHttpUrl(name)) {
      if (picked) throw this.forbidden(imagePath, `a picked file cannot name a URL (${name})`);
      const url = new URL(name);
      if (!this.backingOrigins.includes('*') && !this.backingOrigins.includes(url.origin)) {
        throw this.forbidden(
          imagePath,
          `backing file ${url.href}: origin ${url.origin} is not allowed (BrowserVfs backingOrigins: ${
            this.backingOrigins.join(', ') || 'none'
          })`,
        );
      }
      return url.href;
    }
    const resolved = resolvePosix(dir, name);
    if (picked && !within(this.files.mount, resolved)) {
      throw this.forbidden(imagePath, `a picked file can only name other picked files, not ${resolved}`);
    }
    return resolved;
  }

  /** Relative paths the caller gives are under the OPFS mount. */
  cwd(): string {
    return this.opfs.mount;
  }
}
