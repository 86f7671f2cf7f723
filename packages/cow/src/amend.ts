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
import { BlockError, type OptionSpec } from '@blk/core/portable';
import type { CowHeader } from './codec.js';
import { COW_SECTOR_SIZE, VARIANTS, isCowVariant } from './variants.js';

export const AMEND_OPTIONS = ['size', 'backing_file', 'backing_fmt', 'version', 'variant', 'alignment'] as const;

/** What amend takes, as data: `-o help` for amend is rendered from it, values parsed by type. */
export const AMEND_HELP: readonly OptionSpec[] = [
  {
    name: 'size',
    type: 'size',
    help: 'Virtual disk size: grows the image in place while its bitmap fits before the data',
  },
  {
    name: 'backing_file',
    type: 'string',
    valueName: 'file',
    help: 'Only its current value (blk rebase changes the backing file)',
  },
  {
    name: 'version',
    type: 'enum',
    values: ['3', '2', '1'],
    help: 'Only its current value (blk convert -o version= makes a copy in another layout)',
  },
  { name: 'variant', type: 'string', valueName: 'name', help: 'Only its current value (as version)' },
  { name: 'alignment', type: 'number', help: 'Only its current value (as version)' },
];

/** The size to resize to (undefined: no change), after checking every option against `header`. */
export function planAmend(
  header: CowHeader,
  size: number,
  options: ReadonlyMap<string, string>,
  path: string,
): number | undefined {
  const fail = (kind: 'invalid-argument' | 'not-supported', message: string, field: string): never => {
    throw new BlockError(kind, message, { path, driver: 'cow', field });
  };
  const relayout = (what: string): never =>
    fail(
      'not-supported',
      `cannot change ${what} in place: it decides where the bitmap and the data lie; copy the image instead `
        + `(blk convert -O cow -o ${what}=... ${path} NEW)`,
      what,
    );
  let newSize: number | undefined;
  for (const [key, value] of options) {
    switch (key) {
      case 'size': {
        const n = Number(value);
        if (!/^\d+$/.test(value) || !Number.isSafeInteger(n))
          fail('invalid-argument', `invalid size '${value}'`, 'size');
        if (n < size) {
          fail(
            'not-supported',
            `shrinking from ${size} to ${n} bytes deletes data: use blk resize --shrink ${path} ${n}`,
            'size',
          );
        }
        if (n !== size) newSize = n;
        break;
      }
      case 'backing_file':
        if (value !== header.backingFile) {
          fail('not-supported', 'Cannot amend the backing file; use blk rebase instead', 'backing_file');
        }
        break;
      case 'backing_fmt':
        fail('not-supported', 'Cannot amend the backing file format: cow images do not record it', 'backing_fmt');
        break;
      case 'version':
        if (value !== String(VARIANTS[header.variant].version)) relayout('version');
        break;
      case 'variant':
        if (!isCowVariant(value)) fail('invalid-argument', `unknown cow variant '${value}'`, 'variant');
        if (value !== header.variant) relayout('variant');
        break;
      case 'alignment':
        if (header.alignment === undefined || value !== String(header.alignment)) relayout('alignment');
        break;
      default:
        fail('invalid-argument', `Invalid parameter '${key}' (cow can amend: ${AMEND_OPTIONS.join(', ')})`, key);
    }
  }
  if (newSize !== undefined && newSize % COW_SECTOR_SIZE !== 0) {
    fail('invalid-argument', `The new size must be a multiple of 512 (not ${newSize})`, 'size');
  }
  return newSize;
}
