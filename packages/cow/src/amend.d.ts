/**
 * `qemu-img amend` for COW images: which header options can change in place.
 *
 * - `size`: grows the image as `resize` does (shrinking drops data, so it is
 *   left to `resize --shrink`, where it must be asked for by name);
 * - `backing_file`, `backing_fmt`: never (QEMU: "Cannot amend the backing
 *   file"), `rebase` does it;
 * - `version`, `variant`, `alignment`: they decide where the bitmap and the
 *   data lie, so a change means a copy (`convert`).
 *
 * A value equal to the current one is accepted and changes nothing, as in
 * QEMU. Every option is checked before anything is written.
 */
import { type OptionHelp } from '@blk/core';
import type { CowHeader } from './codec.js';
export declare const AMEND_OPTIONS: readonly ["size", "backing_file", "backing_fmt", "version", "variant", "alignment"];
/** `-o help` for amend. */
export declare const AMEND_HELP: readonly OptionHelp[];
/** The size to resize to (undefined: no change), after checking every option against `header`. */
export declare function planAmend(header: CowHeader, size: number, options: ReadonlyMap<string, string>, path: string): number | undefined;
