/**
 * Checks of what callers pass to the public API (openImage/createImage
 * options, the backing policy, Image method arguments). JavaScript callers,
 * config files and command lines get no type checking: a typo in an option
 * must fail with a typed `invalid-argument` error naming the option, never
 * silently pick some other behaviour (a `backing.mode` of 'opne' used to act
 * as 'ignore' and store zeros over backing data).
 */
import { BlockError } from './errors.js';
/** The error every check throws: `invalid-argument`, with the option's name as `field`. */
export declare function invalidArgument(option: string, problem: string, path?: string): BlockError;
/** A short, printable description of a bad value for a message. */
export declare function describeValue(value: unknown): string;
/** Refuses keys of `record` that are not in `known` (a typo must not pass as "not given"). */
export declare function checkKnownKeys(record: object, known: readonly string[], what: string, path?: string): void;
/** `value` must be a plain object (or undefined when optional). */
export declare function checkRecord(value: unknown, option: string, path?: string): asserts value is Record<string, unknown> | undefined;
export declare function checkOneOf<T extends string>(value: unknown, choices: readonly T[], option: string, path?: string): asserts value is T | undefined;
export declare function checkBoolean(value: unknown, option: string, path?: string): void;
export declare function checkString(value: unknown, option: string, path?: string, nonEmpty?: boolean): void;
/** A whole number in [min, 2^53): NaN, fractions, strings and bigints are refused. */
export declare function checkInteger(value: unknown, option: string, min: number, path?: string): void;
/**
 * Offsets and lengths of Image requests: anything that is not a number is an
 * `invalid-argument` (a string '5' must not become 5, nor a bigint pass); a
 * number out of range stays the `out-of-range` that the range check reports.
 */
export declare function checkNumberArg(value: unknown, option: string, path?: string): void;
/**
 * Data buffers must be byte arrays. A Uint16Array's `length` counts
 * elements, not bytes, so writing one would write (and grow the image by)
 * the wrong amount; a string or an array would be written as zeros.
 */
export declare function checkBytes(value: unknown, option: string, path?: string): asserts value is Uint8Array;
/** A backing policy as the caller gave it (see BackingPolicy). */
export declare function checkBackingPolicy(policy: unknown, path?: string): void;
/** openImage's options (the registry and vfs are objects the caller built; only their presence is checked). */
export declare function checkOpenOptions(options: unknown, path: unknown): void;
/** createImage's options. */
export declare function checkCreateOptions(options: unknown, path: unknown): void;
/** The new backing reference given to Image.setBackingReference. */
export declare function checkBackingSpec(spec: unknown, path?: string): void;
