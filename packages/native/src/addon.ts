/**
 * Loads the blk_native addon (native/*.c) once. Every module of this package
 * goes through here, so a missing addon is detected and explained in one place.
 */
import { createRequire } from 'node:module';

/** What the C side exports (see native/lock.c and native/io.c). */
export interface NativeAddon {
  lock(fd: number, mode: number): [number, number];
  query(fd: number, mode: number): [number, number];
  /** A lock another holder has on bytes [start, start+len): [type (0 none, 1 read, 2 write), pid, its start, its length (0: to the end)]. */
  queryRange?(fd: number, start: number, len: number): [number, number, number, number];
  pread(fd: number, into: Uint8Array, position: number): number;
  pwrite(fd: number, data: Uint8Array, position: number): number;
  /** lseek(2): what 0 = SEEK_DATA, 1 = SEEK_HOLE, 2 = SEEK_END (position 0); the position found, or -errno. */
  seek(fd: number, position: number, what: number): number;
  /** posix_fallocate(3): 0, or -errno. */
  fallocate(fd: number, offset: number, length: number): number;
  /** fallocate(2) keeping the size: punch 1 = PUNCH_HOLE, 0 = ZERO_RANGE; 0 or -errno. */
  zeroRange(fd: number, position: number, length: number, punch: number): number;
}

let addon: NativeAddon | undefined;
let loadError: string | undefined;
let rebuildMayHelp = false;

/** The addon, or undefined when it cannot be loaded (`addonLoadError()` says why). */
export function loadAddon(): NativeAddon | undefined {
  if (addon || loadError) return addon;
  if (process.platform === 'win32') {
    loadError = 'no native addon on Windows';
    return undefined;
  }
  try {
    const require = createRequire(thisModule());
    // src/ and dist/ both sit one level below the package root, beside build/.
    // BLK_NATIVE_ADDON names another build (tests use it to simulate a missing addon).
    addon = require(process.env.BLK_NATIVE_ADDON || '../build/Release/blk_native.node') as NativeAddon;
  } catch (err) {
    // The first line: Node appends the require stack, which only repeats where we are.
    loadError = (err instanceof Error ? err.message : String(err)).split('\n')[0];
    // Only a missing or unloadable .node file is fixed by building it again;
    // any other failure (a bad path, a bug here) would survive a rebuild.
    const code = (err as { code?: unknown } | null)?.code;
    rebuildMayHelp = code === 'MODULE_NOT_FOUND' || code === 'ERR_DLOPEN_FAILED';
  }
  return addon;
}

/**
 * This module's own file, to resolve the addon beside it. The ESM build has
 * import.meta.url; in the CJS build tsup turns import.meta into an empty
 * object, and __filename is the module wrapper's. Never test for a global
 * __filename first: `node -e` and a script piped to node set
 * globalThis.__filename to '[eval]' / '[stdin]', which the ESM build would
 * then take for its own path (and the addon would not load).
 */
function thisModule(): string {
  const url = (import.meta as { url?: string }).url;
  return url ?? __filename;
}

/** Whether building the addon again could fix the failure `addonLoadError()` names. */
export function addonRebuildMayHelp(): boolean {
  return rebuildMayHelp;
}

/** Why the addon did not load, once `loadAddon()` has failed. */
export function addonLoadError(): string | undefined {
  return loadError;
}
