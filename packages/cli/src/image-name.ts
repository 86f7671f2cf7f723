/**
 * An image named on the command line the ways qemu-img takes: a file name, a `json:{...}` name
 * (`json:{"driver":"qcow2","file":{"filename":"a.qcow2"}}`), or with --image-opts an option string
 * (`driver=qcow2,file.filename=a.qcow2`). Both are read by the parser blk io uses
 * (json-filename.ts, io/block-options.ts) and become what blk's commands take: the file's path,
 * its format (-f; an -f given wins, as in qemu-img), -U and -F.
 *
 * Only names the user typed are read so: a name found inside an image (a backing file name) is
 * never one of these operands, and stays a plain file name however it starts (untrusted data).
 *
 * Options taken: `driver`, `file.driver` (only `file`), `file.filename`, `{"driver":"file",
 * "filename":F}` (F read as raw), `force-share` (-U), `backing.driver` (-F, where the command has
 * it), `read-only` and the node names (accepted: they change nothing here). Anything else is
 * refused by name: what only blk io honours (raw's `offset`/`size`, cache modes, qcow2's options)
 * as such, the rest in qemu-img's words.
 */
import { BlockError } from '@blk/core';
import { isJsonFilename, parseJsonFilename } from './json-filename.js';
import { parseOptionList, resolveFileOptions, TAKEN, type OptionValue } from './io/block-options.js';
import type { IoOpenOptions } from './io/open-flags.js';

/** What a named image comes to for a command. */
export interface NamedImage {
  path: string;
  format?: string;
  forceShare?: boolean;
  backingFormat?: string;
}

const HERE = new Set(['driver', 'file.driver', 'file.filename', 'filename', 'file', 'read-only', 'force-share']);
const NODE_NAMES = new Set(['node-name', 'file.node-name', 'backing.node-name']);
const IO_ONLY = new Set(TAKEN.split(', ').map((k) => k.replace(/ \(.*\)$/, '')));

/** Whether `name` must be read as options (json:, or anything under --image-opts). */
export function namesOptions(name: string, imageOpts: boolean): boolean {
  return imageOpts || isJsonFilename(name);
}

/**
 * `name` as a command takes it. `format`: -f as given (wins over `driver`); `command`: the blk
 * command (errors name it); `has`: which of -U and -F it takes. Throws BlockError
 * `invalid-argument` naming `name` with qemu-img's reason for a bad one.
 */
export function namedImage(
  name: string,
  o: {
    imageOpts: boolean;
    format?: string | undefined;
    command: string;
    has: { forceShare: boolean; backingFormat: boolean };
  },
): NamedImage {
  if (!namesOptions(name, o.imageOpts)) return { path: name, ...(o.format !== undefined ? { format: o.format } : {}) };
  const fail = (message: string): never => {
    throw new BlockError('invalid-argument', message, { path: name });
  };
  if (o.imageOpts && o.format !== undefined) fail('--image-opts and --format are mutually exclusive');
  // --image-opts: a first item without `=` is the `file` option (a node name: none exist here).
  let text = name;
  if (o.imageOpts && !/^[^,=]*=/.test(name) && !name.startsWith(',')) text = `file=${name}`;
  const options = o.imageOpts ? parseOptionList(text) : parseJsonFilename(name);
  const driver = options.get('driver');
  for (const key of options.keys()) {
    if (HERE.has(key) || NODE_NAMES.has(key)) continue;
    if (key === 'backing.driver' && o.has.backingFormat) continue;
    if (key === 'force-share' && o.has.forceShare) continue;
    if (IO_ONLY.has(key) || key === 'backing.driver' || key === 'force-share') {
      fail(`option '${key}' is taken by blk io only, not by blk ${o.command}`);
    }
    const format = typeof driver === 'string' ? driver : 'raw';
    fail(`Block format '${format}' does not support the option '${key}'`);
  }
  const into: IoOpenOptions = {
    readOnly: false,
    snapshot: false,
    cache: { writethrough: false, noFlush: false, direct: false },
    unmap: true,
    forceShare: false,
    nativeAio: false,
  };
  const direct = new Map<string, OptionValue>();
  if (o.format !== undefined) direct.set('driver', o.format);
  const resolved = resolveFileOptions(text, direct, into, o.imageOpts);
  if (typeof resolved === 'string') fail(resolved);
  const { path } = resolved as Exclude<typeof resolved, string>;
  return {
    path,
    ...(into.format !== undefined ? { format: into.format } : {}),
    ...(into.forceShare ? { forceShare: true } : {}),
    ...(into.backingFormat !== undefined ? { backingFormat: into.backingFormat } : {}),
  };
}
