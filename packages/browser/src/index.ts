/**
 * @blk/browser: blk in a browser. Storages (`BlobStorage` for picked files,
 * `OpfsStorage` over OPFS synchronous access handles in a worker, HTTP from
 * @blk/http), Web Locks, `BrowserVfs` (OPFS + picked files + URLs), a host
 * with the raw and cow formats, and the streams of @blk/stream. No Node
 * built-ins; bundles with `platform: 'browser'`.
 */
import { createHost, type BackingPolicy, type BlockDriver, type Host, type HostOptions } from '@blk/core/portable';
import { cowDriver } from '@blk/cow';
import { rawDriver } from '@blk/raw';
import { BrowserVfs, type BrowserVfsOptions } from './vfs.js';

export * from './blob.js';
export * from './errors.js';
export * from './lock.js';
export * from './opfs.js';
export * from './vfs.js';
export * from '@blk/stream';
export { HttpStorage, HttpVfs, isHttpUrl, type HttpStorageOptions, type HttpVfsOptions } from '@blk/http';
export { cowDriver, rawDriver };

/** Options of `browserHost`. */
export interface BrowserHostOptions extends Omit<HostOptions, 'vfs' | 'drivers'>, BrowserVfsOptions {
  /** Formats (default cow, then raw). Add `qcow2Driver` from @blk/qcow2 to read qcow2. */
  drivers?: readonly BlockDriver[];
  /** A Vfs of your own instead of a `BrowserVfs` made from the options. */
  vfs?: BrowserVfs;
}

/** A host whose files are `BrowserVfs` paths: `/opfs/...`, `/files/...` (picked files) and http(s) URLs. */
export function browserHost(options: BrowserHostOptions = {}): Host & { vfs: BrowserVfs } {
  const { drivers, vfs, opfs, files, http, backingOrigins, ...rest } = options;
  const vfsOptions: BrowserVfsOptions = {};
  if (opfs) vfsOptions.opfs = opfs;
  if (files) vfsOptions.files = files;
  if (http) vfsOptions.http = http;
  if (backingOrigins) vfsOptions.backingOrigins = backingOrigins;
  const theVfs = vfs ?? new BrowserVfs(vfsOptions);
  // The core refuses a local (OPFS or picked) image naming a URL unless the backing policy allows its
  // origin: allow the origins the BrowserVfs allows (default the page's own), also for opens that
  // bring a backing policy of their own without an allowOrigins.
  const allowOrigins: BackingPolicy['allowOrigins'] =
    rest.backing?.allowOrigins
    ?? ((from, to) => from === 'local' && (theVfs.backingOrigins.includes('*') || theVfs.backingOrigins.includes(to)));
  const withOrigins = (backing: BackingPolicy | undefined): BackingPolicy =>
    backing?.allowOrigins !== undefined ? backing : { ...backing, allowOrigins };
  const host = createHost({
    ...rest,
    backing: withOrigins(rest.backing),
    drivers: drivers ?? [cowDriver, rawDriver],
    vfs: theVfs,
  });
  const browser: Host & { vfs: BrowserVfs } = Object.create(host);
  browser.openImage = (path, options = {}) =>
    host.openImage(path, { ...options, backing: withOrigins(options.backing) });
  return browser;
}
