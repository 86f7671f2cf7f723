/**
 * The cow driver's `driverOptions`, checked: they arrive as an untyped record
 * (from a CLI flag, a config file), so a typo must fail loudly instead of
 * silently opening the image some other way.
 */
import { BlockError, isPowerOfTwo, type OptionSpec, type PreallocationMode } from '@blk/core/portable';
import { COW_VARIANTS, isCowVariant, type CowVariant } from './variants.js';

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

export const CREATE_VARIANTS: readonly CowCreateVariant[] = ['v3', 'v2-qemu-lp64', 'v2-qemu-ilp32', 'v2-uml', 'v1'];

function invalid(message: string, path: string | undefined, field?: string): BlockError {
  return new BlockError('invalid-argument', message, { path, field, driver: 'cow' });
}

function checkKeys(raw: Record<string, unknown>, known: readonly string[], path: string | undefined): void {
  for (const key of Object.keys(raw)) {
    if (!known.includes(key)) {
      throw invalid(`unknown cow option '${key}' (known: ${known.join(', ')})`, path, key);
    }
  }
}

export function parseOpenOptions(raw: Record<string, unknown> | undefined, path: string): CowOpenOptions {
  const out: CowOpenOptions = {};
  if (!raw) return out;
  checkKeys(raw, ['variant', 'bitmapCacheBytes'], path);
  if (raw.variant !== undefined) {
    if (!isCowVariant(raw.variant)) {
      throw invalid(
        `unknown cow variant '${String(raw.variant)}' (known: ${COW_VARIANTS.join(', ')})`,
        path,
        'variant',
      );
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
export function defaultCreateVariant(hasBacking: boolean): CowCreateVariant {
  return hasBacking ? 'v3' : 'v2-qemu-lp64';
}

export function parseCreateOptions(
  raw: Record<string, unknown> | undefined,
  path: string | undefined,
  hasBacking = true,
): Required<Pick<CowCreateOptions, 'variant'>> & CowCreateOptions {
  const variant = raw?.variant ?? defaultCreateVariant(hasBacking);
  if (raw) checkKeys(raw, ['variant', 'alignment'], path);
  if (!(CREATE_VARIANTS as readonly unknown[]).includes(variant)) {
    const why = variant === 'v3-broken' ? ' (a layout no writer may produce)' : '';
    throw invalid(
      `cannot create cow variant '${String(variant)}'${why}; choose one of ${CREATE_VARIANTS.join(', ')}`,
      path,
      'variant',
    );
  }
  const out: Required<Pick<CowCreateOptions, 'variant'>> & CowCreateOptions = { variant: variant as CowCreateVariant };
  if (raw?.alignment !== undefined) {
    const al = raw.alignment;
    if (out.variant !== 'v3') throw invalid(`alignment applies to v3 only, not ${out.variant}`, path, 'alignment');
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
export const COW_PREALLOCATION: readonly PreallocationMode[] = ['off', 'metadata', 'falloc', 'full'];

/**
 * `-o` options of `create` (qemu-img create -f cow -o help), as data. Besides
 * createImage's own options: `version` (qemu-img's name, mapped to the
 * variant it writes), `variant` and `alignment` (driverOptions).
 */
export const CREATE_OPTIONS: readonly OptionSpec[] = [
  { name: 'size', type: 'size', help: 'Virtual disk size' },
  {
    name: 'preallocation',
    type: 'enum',
    values: COW_PREALLOCATION,
    default: 'off',
    valueName: 'str',
    help: 'Preallocation mode (allowed values: off, metadata, falloc, full); bits stay clear',
  },
  { name: 'backing_file', type: 'string', valueName: 'file', help: 'File name of a base image' },
  { name: 'backing_fmt', type: 'string', valueName: 'fmt', help: 'Image format of the base image' },
  {
    name: 'version',
    type: 'enum',
    values: ['3', '2', '1'],
    driverOption: 'variant',
    mapsTo: { 3: 'v3', 2: 'v2-qemu-lp64', 1: 'v1' },
    default: '3',
    help: "COW header version: 3 = UML (default), 2 = QEMU's cow (v2-qemu-lp64), 1 = old UML",
  },
  {
    name: 'variant',
    type: 'string',
    valueName: 'name',
    help: 'Exact layout: v3, v2-qemu-lp64, v2-qemu-ilp32, v2-uml, v1',
  },
  {
    name: 'alignment',
    type: 'number',
    default: 4096,
    help: 'v3 only: alignment of the bitmap and data area (a power of two; default 4096)',
  },
];
