import { BlockError } from '../errors.js';
export const PREALLOCATION_MODES = ['off', 'metadata', 'falloc', 'full'];
/** True when `value` names a preallocation mode. */
export function isPreallocationMode(value) {
    return PREALLOCATION_MODES.includes(value);
}
/**
 * `mode` (default `off`) when the driver supports it; else throws
 * `not-supported` in qemu's words ("Unsupported preallocation mode: metadata").
 */
export function supportedPreallocation(mode, supported, context) {
    const chosen = mode ?? 'off';
    if (!isPreallocationMode(chosen)) {
        throw new BlockError('invalid-argument', `Invalid preallocation mode '${String(chosen)}'`, context);
    }
    if (!supported.includes(chosen)) {
        throw new BlockError('not-supported', `Unsupported preallocation mode: ${chosen}`, context);
    }
    return chosen;
}
