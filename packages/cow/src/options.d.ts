/**
 * The cow driver's `driverOptions`, checked: they arrive as an untyped record
 * (from a CLI flag, a config file), so a typo must fail loudly instead of
 * silently opening the image some other way.
 */
import { type PreallocationMode } from '@blk/core';
import { type CowVariant } from './variants.js';
/** `driverOptions` accepted by `cowDriver.open`. */
export interface CowOpenOptions {
    /**
     * The header layout, for files whose header cannot tell (a version-2 file
     * is v2-uml, v2-qemu-lp64 or v2-qemu-ilp32; detection is a heuristic).
     * Must match the file's version number.
     */
    variant?: CowVariant;
    /** Upper bound on bitmap bytes kept in memory (default 8 MiB, at least one 4 KiB chunk). */
    bitmapCacheBytes?: number;
}
/** Variants `create` writes: every one but v3-broken, which no writer may produce. */
export type CowCreateVariant = Exclude<CowVariant, 'v3-broken'>;
/** `driverOptions` accepted by `cowDriver.create`. */
export interface CowCreateOptions {
    /**
     * Default `v3` (as uml_mkcow) over a backing file, `v2-qemu-lp64` (as QEMU's
     * cow_create on x86_64) without one: v3 cannot store an empty backing path.
     * `v2-qemu-*` for QEMU interop; `v1` and `v2-uml` for test fixtures only.
     */
    variant?: CowCreateVariant;
    /** v3 only: alignment of the bitmap and data area, a power of two up to 1 GiB (default 4096, UML's page size). */
    alignment?: number;
}
export declare const CREATE_VARIANTS: readonly CowCreateVariant[];
export declare function parseOpenOptions(raw: Record<string, unknown> | undefined, path: string): CowOpenOptions;
/** The variant `create` writes when none is named: UML's v3 for an overlay, QEMU's layout for a standalone image. */
export declare function defaultCreateVariant(hasBacking: boolean): CowCreateVariant;
export declare function parseCreateOptions(raw: Record<string, unknown> | undefined, path: string | undefined, hasBacking?: boolean): Required<Pick<CowCreateOptions, 'variant'>> & CowCreateOptions;
/**
 * Preallocation of a COW file. Bits stay clear in every mode (a set bit
 * would hide the backing file): what is reserved is host space.
 * - `metadata`: the bitmap (and the padding before the data) written as zeros;
 * - `falloc`: the bitmap and the whole data area reserved (posix_fallocate);
 * - `full`: the same written as zeros.
 */
export declare const COW_PREALLOCATION: readonly PreallocationMode[];
