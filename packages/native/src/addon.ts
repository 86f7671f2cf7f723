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
  /** native/send.c (see send.ts): a job handle for cancel. */
  sendv?(sockFd: number, data: Uint8Array, plan: Float64Array, done: (errno: number, sent: number) => void): unknown;
  cancel?(job: unknown): void;
}

/** What loading one addon file gave: the addon, or why not. */
interface Loaded {
  addon?: NativeAddon;
  error?: string;
  rebuildMayHelp: boolean;
}

/**
 * Each addon file is loaded once (a native module stays loaded for the
 * process anyway): this remembers what loading gave, keyed by the file ('' for
 * the built one). Nothing here is configuration: which file to load is the
 * caller's argument.
 */
const loaded = new Map<string, Loaded>();

/**
 * The addon, or undefined when it cannot be loaded (`addonLoadError()` says why).
 * `file` names another build of it (the blk command passes BLK_NATIVE_ADDON;
 * tests use it to simulate a missing addon); default: the one built beside this package.
 */
export function loadAddon(file?: string): NativeAddon | undefined {
  return load(file).addon;
}

function load(file: string | undefined): Loaded {
  const key = file ?? '';
  let result = loaded.get(key);
  if (result) return result;
  result = { rebuildMayHelp: false };
  if (process.platform === 'win32') {
    result.error = 'no native addon on Windows';
  } else {
    try {
      const require = createRequire(thisModule());
      // src/ and dist/ both sit one level below the package root, beside build/.
      result.addon = require(file || '../build/Release/blk_native.node') as NativeAddon;
    } catch (err) {
      // The first line: Node appends the require stack, which only repeats where we are.
      result.error = (err instanceof Error ? err.message : String(err)).split('\n')[0];
      // Only a missing or unloadable .node file is fixed by building it again;
      // any other failure (a bad path, a bug here) would survive a rebuild.
      const code = (err as { code?: unknown } | null)?.code;
      result.rebuildMayHelp = code === 'MODULE_NOT_FOUND' || code === 'ERR_DLOPEN_FAILED';
    }
  }
  loaded.set(key, result);
  return result;
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

/** Whether building the addon again could fix the failure `addonLoadError(file)` names. */
export function addonRebuildMayHelp(file?: string): boolean {
  return loaded.get(file ?? '')?.rebuildMayHelp ?? false;
}

/** Why the addon (`file`, as given to `loadAddon`) did not load, once `loadAddon(file)` has failed. */
export function addonLoadError(file?: string): string | undefined {
  return loaded.get(file ?? '')?.error;
}
