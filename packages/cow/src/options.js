/**
 * The cow driver's `driverOptions`, checked: they arrive as an untyped record
 * (from a CLI flag, a config file), so a typo must fail loudly instead of
 * silently opening the image some other way.
 */
import { BlockError, isPowerOfTwo } from '@blk/core';
import { COW_VARIANTS, isCowVariant } from './variants.js';
export const CREATE_VARIANTS = ['v3', 'v2-qemu-lp64', 'v2-qemu-ilp32', 'v2-uml', 'v1'];
function invalid(message, path, field) {
    return new BlockError('invalid-argument', message, { path, field, driver: 'cow' });
}
function checkKeys(raw, known, path) {
    for (const key of Object.keys(raw)) {
        if (!known.includes(key)) {
            throw invalid(`unknown cow option '${key}' (known: ${known.join(', ')})`, path, key);
        }
    }
}
export function parseOpenOptions(raw, path) {
    const out = {};
    if (!raw)
        return out;
    checkKeys(raw, ['variant', 'bitmapCacheBytes'], path);
    if (raw.variant !== undefined) {
        if (!isCowVariant(raw.variant)) {
            throw invalid(`unknown cow variant '${String(raw.variant)}' (known: ${COW_VARIANTS.join(', ')})`, path, 'variant');
        }
        out.variant = raw.variant;
    }
    if (raw.bitmapCacheBytes !== undefined) {
        const n = raw.bitmapCacheBytes;
        if (typeof n !== 'number' || !Number.isSafeInteger(n) || n <= 0) {
            throw invalid(`bitmapCacheBytes must be a positive integer, not ${String(n)}`, path, 'bitmapCacheBytes');
        }
        out.bitmapCacheBytes = n;
    }
    return out;
}
/** The variant `create` writes when none is named: UML's v3 for an overlay, QEMU's layout for a standalone image. */
export function defaultCreateVariant(hasBacking) {
    return hasBacking ? 'v3' : 'v2-qemu-lp64';
}
export function parseCreateOptions(raw, path, hasBacking = true) {
    const variant = raw?.variant ?? defaultCreateVariant(hasBacking);
    if (raw)
        checkKeys(raw, ['variant', 'alignment'], path);
    if (!CREATE_VARIANTS.includes(variant)) {
        const why = variant === 'v3-broken' ? ' (a layout no writer may produce)' : '';
        throw invalid(`cannot create cow variant '${String(variant)}'${why}; choose one of ${CREATE_VARIANTS.join(', ')}`, path, 'variant');
    }
    const out = { variant: variant };
    if (raw?.alignment !== undefined) {
        const al = raw.alignment;
        if (out.variant !== 'v3')
            throw invalid(`alignment applies to v3 only, not ${out.variant}`, path, 'alignment');
        if (typeof al !== 'number' || !isPowerOfTwo(al)) {
            throw invalid(`alignment must be a power of two up to 1 GiB, not ${String(al)}`, path, 'alignment');
        }
        out.alignment = al;
    }
    return out;
}
/**
 * Preallocation of a COW file. Bits stay clear in every mode (a set bit
 * would hide the backing file): what is reserved is host space.
 * - `metadata`: the bitmap (and the padding before the data) written as zeros;
 * - `falloc`: the bitmap and the whole data area reserved (posix_fallocate);
 * - `full`: the same written as zeros.
 */
export const COW_PREALLOCATION = ['off', 'metadata', 'falloc', 'full'];
