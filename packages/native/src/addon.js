/**
 * Loads the blk_native addon (native/*.c) once. Every module of this package
 * goes through here, so a missing addon is detected and explained in one place.
 */
import { createRequire } from 'node:module';
let addon;
let loadError;
let rebuildMayHelp = false;
/** The addon, or undefined when it cannot be loaded (`addonLoadError()` says why). */
export function loadAddon() {
    if (addon || loadError)
        return addon;
    if (process.platform === 'win32') {
        loadError = 'no native addon on Windows';
        return undefined;
    }
    try {
        const require = createRequire(thisModule());
        // src/ and dist/ both sit one level below the package root, beside build/.
        // BLK_NATIVE_ADDON names another build (tests use it to simulate a missing addon).
        addon = require(process.env.BLK_NATIVE_ADDON || '../build/Release/blk_native.node');
    }
    catch (err) {
        // The first line: Node appends the require stack, which only repeats where we are.
        loadError = (err instanceof Error ? err.message : String(err)).split('\n')[0];
        // Only a missing or unloadable .node file is fixed by building it again;
        // any other failure (a bad path, a bug here) would survive a rebuild.
        const code = err?.code;
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
function thisModule() {
    const url = import.meta.url;
    return url ?? __filename;
}
/** Whether building the addon again could fix the failure `addonLoadError()` names. */
export function addonRebuildMayHelp() {
    return rebuildMayHelp;
}
/** Why the addon did not load, once `loadAddon()` has failed. */
export function addonLoadError() {
    return loadError;
}
