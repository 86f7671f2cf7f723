import { BlockError } from '../errors.js';
import type { BackingSpec } from './backing.js';

/* What drivers take and report besides I/O: create, measure, resize, check and amend options and results. */

/**
 * One `-o key=value` option a driver takes for create or amend, declared as
 * data (`BlockDriver.createOptions`, `amendOptions`): a front end renders
 * `-o help` from it and parses values by `type`, knowing no format.
 *
 * The four options every create takes (`size`, `backing_file`,
 * `backing_fmt`, `preallocation`) are createImage's own options; a driver
 * lists those it accepts, with its own help. Every other option reaches the
 * driver as `driverOptions[driverOption ?? name]`.
 */
export interface OptionSpec {
  /** The key as typed (`version`). */
  name: string;
  /**
   * How the value is read: `size` (bytes, with a K/M/G/T suffix), `bool`
   * (on/off), `enum` (one of `values`), `number` (an integer), `string`.
   */
  type: 'size' | 'bool' | 'enum' | 'string' | 'number';
  /** `enum`: the values as typed, in the order help lists them. */
  values?: readonly string[];
  /** `enum`: what each typed value stands for in `driverOptions` (default: the value itself). */
  mapsTo?: Readonly<Record<string, string | number | boolean>>;
  /** The key in `driverOptions` (default `name`). */
  driverOption?: string;
  /** The value used when the option is not given, as help may show it. */
  default?: string | number | boolean;
  /** How `-o help` names the value (`name=<valueName>`); default by type: size, on|off, the values joined by `|`, n, str. */
  valueName?: string;
  /** One line for `-o help`. */
  help: string;
}

/** The key as `-o help` lists it: `version=<3|2|1>`. */
export function optionSynopsis(spec: OptionSpec): string {
  const byType =
    spec.type === 'size'
      ? 'size'
      : spec.type === 'bool'
        ? 'on|off'
        : spec.type === 'enum'
          ? (spec.values ?? []).join('|')
          : spec.type === 'number'
            ? 'n'
            : 'str';
  return `${spec.name}=<${spec.valueName ?? byType}>`;
}

/**
 * How much space to reserve for a new image, or for the new part of a
 * resized one (qemu's preallocation modes):
 * - `off`: nothing; the file is sparse;
 * - `metadata`: the format's metadata is written, data stays sparse;
 * - `falloc`: the file system reserves the blocks (posix_fallocate), unwritten;
 * - `full`: zeros are written (every block allocated and touched).
 * Preallocation never changes what the image reads.
 */
export type PreallocationMode = 'off' | 'metadata' | 'falloc' | 'full';

export const PREALLOCATION_MODES: readonly PreallocationMode[] = ['off', 'metadata', 'falloc', 'full'];

/** True when `value` names a preallocation mode. */
export function isPreallocationMode(value: unknown): value is PreallocationMode {
  return (PREALLOCATION_MODES as readonly unknown[]).includes(value);
}

/**
 * `mode` (default `off`) when the driver supports it; else throws
 * `not-supported` in qemu's words ("Unsupported preallocation mode: metadata").
 */
export function supportedPreallocation(
  mode: PreallocationMode | undefined,
  supported: readonly PreallocationMode[],
  context: { path?: string; driver: string },
): PreallocationMode {
  const chosen = mode ?? 'off';
  if (!isPreallocationMode(chosen)) {
    throw new BlockError('invalid-argument', `Invalid preallocation mode '${String(chosen)}'`, context);
  }
  if (!supported.includes(chosen)) {
    throw new BlockError('not-supported', `Unsupported preallocation mode: ${chosen}`, context);
  }
  return chosen;
}

export interface MeasureInput {
  /** Virtual size in bytes of the image to measure. */
  size: number;
  /** Format options, as for `create`. */
  driverOptions?: Record<string, unknown>;
  preallocation?: PreallocationMode;
  /**
   * For a copy of an existing image: bytes of the source that hold data,
   * each run of data widened to whole `granularity`-byte blocks (the driver's
   * allocation unit). Undefined when measuring an empty image.
   */
  dataBytes?: (granularity: number) => Promise<number>;
  /** The source image's format, when measuring a copy of one (qemu-img measure shows bitmaps only for some). */
  sourceFormat?: string;
}

export interface MeasureResult {
  /** Host bytes the image needs as measured (qemu-img's "required size"). */
  required: number;
  /** Host bytes it needs with every block of data allocated ("fully allocated size"). */
  fullyAllocated: number;
  /** Bytes of persistent dirty bitmaps the copy would carry; absent when either side cannot store them. */
  bitmaps?: number;
}

export interface ResizeOptions {
  preallocation?: PreallocationMode;
  /**
   * Virtual size of the backing file, when the image has one and it is
   * open (formats that record their backing file's size check it).
   */
  backingSize?: number;
}

/** Which of the problems `check` finds it should also repair (qemu-img check -r). */
export interface RepairRequest {
  /** Space that is wasted but harms no data (qemu's leaks). */
  leaks: boolean;
  /** Inconsistencies that could corrupt data. */
  corruptions: boolean;
}

/** What a driver's `check` found (and repaired, when asked). */
export interface DriverCheckResult {
  /** Problems found that are not repaired now. */
  corruptions: number;
  leaks: number;
  /** Problems found and repaired by this call. */
  corruptionsFixed: number;
  leaksFixed: number;
  /** One line per kind of problem, `ERROR ...` / `Leaked ...` / `Repairing ...`, as qemu-img prints them. */
  messages: string[];
  /** Parts of the check that could not run (I/O errors): qemu-img's `check-errors`. Default 0. */
  checkErrors?: number;
  /** The format's own allocation statistics (qemu-img check's cluster counts); absent: the core counts sectors. */
  stats?: CheckStats;
}

/** qemu-img check's BlockFragInfo and image end offset, in the format's clusters. */
export interface CheckStats {
  totalClusters: number;
  allocatedClusters: number;
  fragmentedClusters: number;
  compressedClusters: number;
  /** Host bytes up to the end of the last cluster in use. */
  imageEndOffset: number;
}

export interface DriverCreateOptions {
  /** Virtual size in bytes. */
  size: number;
  backing?: BackingSpec;
  driverOptions?: Record<string, unknown>;
  /** Default `off`. A driver throws `not-supported` for a mode it has no meaning for. */
  preallocation?: PreallocationMode;
}
