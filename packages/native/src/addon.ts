/**
 * Loads the blk_native addon (native/*.c) once. Every module of this package
 * goes through here, so a missing addon is detected and explained in one place.
 */
import { createRequire } from 'node:module';

/** What the C side exports (see native/lock.c and native/io.c). */
export interface NativeAddon {
  lock(fd: number, mode: number): [number, number];
  query(fd: number, mode: number): [number, number];
  pread(fd: number, into: Uint8Array, position: number): number;
  pwrite(fd: number, data: Uint8Array, position: number): number;
  /** lseek(2): what 0 = SEEK_DATA, 1 = SEEK_HOLE; the position found, or -errno. */
  seek(fd: number, position: number, what: number): number;
  /** posix_fallocate(3): 0, or -errno. */
  fallocate(fd: number, offset: number, length: number): number;
  /** fallocate(2) keeping the size: punch 1 = PUNCH_HOLE, 0 = ZERO_RANGE; 0 or -errno. */
  zeroRange(fd: number, position: number, length: number, punch: number): number;
}

let addon: NativeAddon | undefined;
let loadError: string | undefined;

/** The addon, or undefined when it cannot be loaded (`addonLoadError()` says why). */
export function loadAddon(): NativeAddon | undefined {
  if (addon || loadError) return addon;
  if (process.platform === 'win32') {
    loadError = 'no native addon on Windows';
    return undefined;
  }
  try {
    // The CJS build has __filename and no import.meta.url; the ESM build the reverse.
    const require = createRequire(typeof __filename === 'string' ? __filename : import.meta.url);
    // src/ and dist/ both sit one level below the package root, beside build/.
    // BLK_NATIVE_ADDON names another build (tests use it to simulate a missing addon).
    addon = require(process.env.BLK_NATIVE_ADDON || '../build/Release/blk_native.node') as NativeAddon;
  } catch (err) {
    loadError = err instanceof Error ? err.message : String(err);
  }
  return addon;
}

/** Why the addon did not load, once `loadAddon()` has failed. */
export function addonLoadError(): string | undefined {
  return loadError;
}
