/**
 * Checks of what callers pass to the public API (openImage/createImage
 * options, the backing policy, Image method arguments). JavaScript callers,
 * config files and command lines get no type checking: a typo in an option
 * must fail with a typed `invalid-argument` error naming the option, never
 * silently pick some other behaviour (a `backing.mode` of 'opne' used to act
 * as 'ignore' and store zeros over backing data).
 */
import { BlockError } from './errors.js';
import type { BackingPolicy } from './image/backing-policy.js';
import type { CacheMode } from './format/driver.js';

/** The error every check throws: `invalid-argument`, with the option's name as `field`. */
export function invalidArgument(option: string, problem: string, path?: string): BlockError {
  return new BlockError('invalid-argument', `${option} ${problem}`, { path, field: option });
}

/** A short, printable description of a bad value for a message. */
export function describeValue(value: unknown): string {
  if (value === null) return 'null';
  if (typeof value === 'string') return JSON.stringify(value.length > 40 ? `${value.slice(0, 40)}...` : value);
  if (typeof value === 'number' || typeof value === 'boolean' || typeof value === 'undefined') return String(value);
  if (typeof value === 'bigint') return `${value}n`;
  if (typeof value === 'function') return 'a function';
  if (ArrayBuffer.isView(value)) return `a ${value.constructor.name}`;
  if (Array.isArray(value)) return 'an array';
  return `a ${typeof value}`;
}

/** Refuses keys of `record` that are not in `known` (a typo must not pass as "not given"). */
export function checkKnownKeys(record: object, known: readonly string[], what: string, path?: string): void {
  for (const key of Object.keys(record)) {
    if (!known.includes(key)) {
      throw invalidArgument(`${what}.${key}`, `is not an option (known: ${known.join(', ')})`, path);
    }
  }
}

/** `value` must be a plain object (or undefined when optional). */
export function checkRecord(
  value: unknown,
  option: string,
  path?: string,
): asserts value is Record<string, unknown> | undefined {
  if (value === undefined) return;
  if (typeof value !== 'object' || value === null || Array.isArray(value) || ArrayBuffer.isView(value)) {
    throw invalidArgument(option, `must be an object, not ${describeValue(value)}`, path);
  }
}

export function checkOneOf<T extends string>(
  value: unknown,
  choices: readonly T[],
  option: string,
  path?: string,
): asserts value is T | undefined {
  if (value === undefined) return;
  if (typeof value !== 'string' || !(choices as readonly string[]).includes(value)) {
    throw invalidArgument(
      option,
      `must be one of ${choices.map((c) => `'${c}'`).join(', ')}, not ${describeValue(value)}`,
      path,
    );
  }
}

export function checkBoolean(value: unknown, option: string, path?: string): void {
  if (value !== undefined && typeof value !== 'boolean') {
    throw invalidArgument(option, `must be true or false, not ${describeValue(value)}`, path);
  }
}

export function checkString(value: unknown, option: string, path?: string, nonEmpty = true): void {
  if (value === undefined) return;
  if (typeof value !== 'string' || (nonEmpty && value === '')) {
    throw invalidArgument(option, `must be a${nonEmpty ? ' non-empty' : ''} string, not ${describeValue(value)}`, path);
  }
  if (value.includes('\0')) throw invalidArgument(option, 'must not contain a NUL character', path);
}

/** A whole number in [min, 2^53): NaN, fractions, strings and bigints are refused. */
export function checkInteger(value: unknown, option: string, min: number, path?: string): void {
  if (value === undefined) return;
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < min) {
    throw invalidArgument(
      option,
      `must be an integer of at least ${min} (below 2^53), not ${describeValue(value)}`,
      path,
    );
  }
}

/**
 * Offsets and lengths of Image requests: anything that is not a number is an
 * `invalid-argument` (a string '5' must not become 5, nor a bigint pass); a
 * number out of range stays the `out-of-range` that the range check reports.
 */
export function checkNumberArg(value: unknown, option: string, path?: string): void {
  if (typeof value !== 'number') throw invalidArgument(option, `must be a number, not ${describeValue(value)}`, path);
}

/**
 * Data buffers must be byte arrays. A Uint16Array's `length` counts
 * elements, not bytes, so writing one would write (and grow the image by)
 * the wrong amount; a string or an array would be written as zeros.
 */
export function checkBytes(value: unknown, option: string, path?: string): asserts value is Uint8Array {
  const bytes =
    value instanceof Uint8Array
    || (ArrayBuffer.isView(value) && Object.prototype.toString.call(value) === '[object Uint8Array]');
  if (!bytes) {
    throw invalidArgument(option, `must be a Uint8Array (bytes), not ${describeValue(value)}`, path);
  }
}

const CACHE_MODES: readonly CacheMode[] = ['writeback', 'writethrough', 'unsafe'];
const BACKING_MODES: readonly NonNullable<BackingPolicy['mode']>[] = ['open', 'forbid', 'ignore'];
const MISMATCH_MODES: readonly NonNullable<BackingPolicy['onMismatch']>[] = ['refuse', 'accept', 'update'];
const POLICY_KEYS: readonly (keyof BackingPolicy)[] = [
  'mode',
  'format',
  'maxDepth',
  'allowedDirs',
  'onMismatch',
  'overridePath',
  'approve',
  'allowDevices',
  'allowOrigins',
];
// forceShare: qemu-img's -U (force-share=on), passed through for the Vfs's lock layer; onWarning hears the Vfs.
const OPEN_KEYS = [
  'registry',
  'heldFiles',
  'format',
  'formatAssumed',
  'readOnly',
  'vfs',
  'cache',
  'driverOptions',
  'backing',
  'forceShare',
  'blockDevices',
  'onWarning',
  'onRepair',
  'forCheck',
];
const CREATE_KEYS = ['registry', 'format', 'size', 'backing', 'driverOptions', 'preallocation', 'vfs', 'overwrite'];

/** A backing policy as the caller gave it (see BackingPolicy). */
export function checkBackingPolicy(policy: unknown, path?: string): void {
  checkRecord(policy, 'backing', path);
  if (policy === undefined) return;
  checkKnownKeys(policy, POLICY_KEYS, 'backing', path);
  checkOneOf(policy.mode, BACKING_MODES, 'backing.mode', path);
  if (typeof policy.format !== 'function') checkString(policy.format, 'backing.format', path);
  checkInteger(policy.maxDepth, 'backing.maxDepth', 0, path);
  const dirs = policy.allowedDirs;
  if (dirs !== undefined) {
    if (!Array.isArray(dirs))
      throw invalidArgument('backing.allowedDirs', `must be an array of directories, not ${describeValue(dirs)}`, path);
    dirs.forEach((dir: unknown, i) => {
      checkString(dir, `backing.allowedDirs[${i}]`, path);
    });
  }
  checkOneOf(policy.onMismatch, MISMATCH_MODES, 'backing.onMismatch', path);
  checkString(policy.overridePath, 'backing.overridePath', path);
  checkBoolean(policy.allowDevices, 'backing.allowDevices', path);
  if (policy.approve !== undefined && typeof policy.approve !== 'function') {
    throw invalidArgument('backing.approve', `must be a function, not ${describeValue(policy.approve)}`, path);
  }
  const origins = policy.allowOrigins;
  if (origins !== undefined && typeof origins !== 'function') {
    if (!Array.isArray(origins)) {
      throw invalidArgument(
        'backing.allowOrigins',
        `must be an array of origins or a function, not ${describeValue(origins)}`,
        path,
      );
    }
    origins.forEach((o: unknown, i) => {
      checkString(o, `backing.allowOrigins[${i}]`, path);
    });
  }
}

function checkRegistry(registry: unknown, path: string): void {
  const r = registry as { probe?: unknown; require?: unknown } | undefined;
  if (typeof r !== 'object' || r === null || typeof r.probe !== 'function' || typeof r.require !== 'function') {
    throw invalidArgument('registry', `must be a DriverRegistry, not ${describeValue(registry)}`, path);
  }
}

/** openImage's options (the registry and vfs are objects the caller built; only their presence is checked). */
export function checkOpenOptions(options: unknown, path: unknown): void {
  if (typeof path !== 'string' || path === '')
    throw invalidArgument('path', `must be a non-empty string, not ${describeValue(path)}`);
  checkRecord(options, 'options', path);
  if (options === undefined) throw invalidArgument('options', 'are required (at least a registry)', path);
  checkKnownKeys(options, OPEN_KEYS, 'options', path);
  checkRegistry(options.registry, path);
  checkString(options.format, 'format', path);
  checkBoolean(options.formatAssumed, 'formatAssumed', path);
  checkBoolean(options.readOnly, 'readOnly', path);
  checkBoolean(options.forceShare, 'forceShare', path);
  checkBoolean(options.forCheck, 'forCheck', path);
  checkBoolean(options.blockDevices, 'blockDevices', path);
  if (options.heldFiles !== undefined) {
    if (!Array.isArray(options.heldFiles))
      throw invalidArgument('heldFiles', `must be an array of paths, not ${describeValue(options.heldFiles)}`, path);
    for (const held of options.heldFiles) checkString(held, 'heldFiles', path);
  }
  if (options.onWarning !== undefined && typeof options.onWarning !== 'function') {
    throw invalidArgument('onWarning', `must be a function, not ${describeValue(options.onWarning)}`, path);
  }
  if (options.onRepair !== undefined && typeof options.onRepair !== 'function') {
    throw invalidArgument('onRepair', `must be a function, not ${describeValue(options.onRepair)}`, path);
  }
  checkOneOf(options.cache, CACHE_MODES, 'cache', path);
  checkRecord(options.driverOptions, 'driverOptions', path);
  checkRecord(options.vfs, 'vfs', path);
  checkBackingPolicy(options.backing, path);
}

/** createImage's options. */
export function checkCreateOptions(options: unknown, path: unknown): void {
  if (typeof path !== 'string' || path === '')
    throw invalidArgument('path', `must be a non-empty string, not ${describeValue(path)}`);
  checkRecord(options, 'options', path);
  if (options === undefined) throw invalidArgument('options', 'are required (at least a registry and a format)', path);
  checkKnownKeys(options, CREATE_KEYS, 'options', path);
  checkRegistry(options.registry, path);
  checkString(options.format, 'format', path);
  if (options.format === undefined) throw invalidArgument('format', 'is required', path);
  // A number out of range stays the `out-of-range` createImage reports for it.
  if (options.size !== undefined) checkNumberArg(options.size, 'size', path);
  const backing = options.backing;
  if (typeof backing === 'object' && backing !== null) {
    checkRecord(backing, 'backing', path);
    checkKnownKeys(backing, ['path', 'format'], 'backing', path);
    if (backing.path === undefined) throw invalidArgument('backing.path', 'is required', path);
    checkString(backing.path, 'backing.path', path);
    checkString(backing.format, 'backing.format', path);
  } else {
    checkString(backing, 'backing', path);
  }
  checkRecord(options.driverOptions, 'driverOptions', path);
  // preallocation: checked by the driver, which knows which modes it supports (supportedPreallocation).
  checkRecord(options.vfs, 'vfs', path);
  checkBoolean(options.overwrite, 'overwrite', path);
}

/** The new backing reference given to Image.setBackingReference. */
export function checkBackingSpec(spec: unknown, path?: string): void {
  if (spec === undefined) return;
  checkRecord(spec, 'backing', path);
  checkKnownKeys(spec!, ['path', 'format', 'facts'], 'backing', path);
  const s = spec as Record<string, unknown>;
  checkString(s.path, 'backing.path', path, false);
  if (s.path === undefined) throw invalidArgument('backing.path', 'is required', path);
  checkString(s.format, 'backing.format', path);
  checkRecord(s.facts, 'backing.facts', path);
  if (s.facts !== undefined) {
    const f = s.facts as Record<string, unknown>;
    checkKnownKeys(f, ['size', 'format', 'fileSize', 'mtimeSec', 'isFile'], 'backing.facts', path);
    checkInteger(f.size, 'backing.facts.size', 0, path);
    checkString(f.format, 'backing.facts.format', path);
    checkInteger(f.fileSize, 'backing.facts.fileSize', 0, path);
    checkInteger(f.mtimeSec, 'backing.facts.mtimeSec', 0, path);
    checkBoolean(f.isFile, 'backing.facts.isFile', path);
  }
}
