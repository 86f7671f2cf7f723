/**
 * The block-layer options blk io takes, the subset of QEMU's that blk can honour, from any of
 * three places: `open -o key=value,...`, a `json:{...}` filename (flattened by json-filename.ts:
 * `file.filename`), and `reopen -o`. Options given directly win over a json: name's (as in QEMU).
 *
 * Taken (QEMU's meanings):
 * - `driver` (the format); `file.driver` only `file`; `file.filename` (the file, in a json: name);
 *   a json: name's `"driver":"file","filename":F` is F read as raw (QEMU's protocol node itself)
 * - `read-only`, `force-share`, `cache.no-flush`, `cache.direct`, `discard`
 * - `node-name`, `file.node-name`, `backing.node-name` (checked as QEMU checks them, then only
 *   remembered: blk io has no node graph, but `reopen` refuses to change them)
 * - `backing`: only `null` (no backing file: what the image does not hold reads as zeros);
 *   `backing.driver` (the backing file's format, as -F)
 * - raw's `offset` and `size` (a window on the file)
 * - qcow2's `lazy-refcounts`; its cache sizes (`cache-size`, `l2-cache-size`,
 *   `refcount-cache-size`, `l2-cache-entry-size`: checked as QEMU checks them, no effect,
 *   qcow2-cache-options.ts)
 * - `file.aio` (threads, native, io_uring: blk's I/O is the same for all)
 * Anything else is refused by name. A json: filename is accepted only as the file the user names,
 * never as a backing file name read from an image (those stay plain paths, see BackingPolicy).
 */
import { JsonNumber, parseJsonFilename, isJsonFilename, type JsonScalar } from '../json-filename.js';
import { parseSizeResult } from '../size.js';
import { parseDiscard, validAio, type IoOpenOptions } from './open-flags.js';
import { QCOW2_CACHE_OPTIONS } from './qcow2-cache-options.js';

/** One option's value: text from `-o`, or a JSON scalar from a json: name. */
export type OptionValue = string | JsonScalar;

/** `-o` text (`,,` is a literal comma) as ordered key/value pairs; a bare key means `on`. */
export function parseOptionList(text: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const item of text.replace(/,,/g, '\0').split(',')) {
    if (item === '') continue;
    const eq = item.indexOf('=');
    const key = (eq < 0 ? item : item.slice(0, eq)).replace(/\0/g, ',');
    out.set(key, eq < 0 ? 'on' : item.slice(eq + 1).replace(/\0/g, ','));
  }
  return out;
}

/** QEMU's id_wellformed: a letter, then letters, digits, '-', '.', '_'. */
function nodeNameOk(name: string): boolean {
  return /^[A-Za-z][A-Za-z0-9._-]*$/.test(name);
}

/** qapi_bool_parse: on/off, yes/no, true/false (JSON booleans too); undefined otherwise. */
export function boolValue(v: OptionValue): boolean | undefined {
  if (typeof v === 'boolean') return v;
  if (v === 'on' || v === 'yes' || v === 'true') return true;
  if (v === 'off' || v === 'no' || v === 'false') return false;
  return undefined;
}

/** QEMU's hint after a bad size option: two more lines of the same error (qemu-messages.ts keeps them lines). */
export const SIZE_HINT =
  '\nOptional suffix k, M, G, T, P or E means kilo-, mega-, giga-, tera-, peta-\nand exabytes, respectively.';

/** A size option (QEMU's QEMU_OPT_SIZE): a non-negative integer or a size with a suffix. */
function sizeValue(key: string, v: OptionValue): number | string {
  const bad = `Parameter '${key}' expects a non-negative number below 2^64${SIZE_HINT}`;
  if (v instanceof JsonNumber) {
    if (!/^[0-9]+$/.test(v.text)) return bad;
    const n = Number(v.text);
    return Number.isSafeInteger(n) ? n : `Parameter '${key}': ${v.text} is too large for blk`;
  }
  if (typeof v !== 'string') return bad;
  const r = parseSizeResult(v);
  return r.ok ? r.value : bad;
}

/** What the options said beyond IoOpenOptions' flags (applied to it in place). */
export interface BlockOptionExtras {
  /** The file, from `file.filename` (json:) */
  filename?: string;
  /** raw's window on the file. */
  window?: { offset: number; size?: number };
  nodeNames: Map<string, string>;
  /** qcow2's cache sizes as given (checked once the image is open: they depend on its cluster size). */
  qcow2Cache: Map<string, number>;
}

export const TAKEN =
  'driver, file.driver, file.filename, read-only, force-share, cache.no-flush, cache.direct, discard, '
  + 'node-name, file.node-name, backing.node-name, backing (null), backing.driver, offset, size, '
  + `lazy-refcounts, ${QCOW2_CACHE_OPTIONS.join(', ')}, file.aio`;

/**
 * Applies `options` to `into` (flags) and `extras`; returns the error message for the first option
 * blk io cannot take or a bad value (QEMU's texts where QEMU has one).
 */
export function applyBlockOptions(
  options: ReadonlyMap<string, OptionValue>,
  into: IoOpenOptions,
  extras: BlockOptionExtras,
): string | undefined {
  const onOff = (key: string, v: OptionValue): boolean | string => {
    const b = boolValue(v);
    return b === undefined ? `Parameter '${key}' expects 'on' or 'off'` : b;
  };
  const text = (v: OptionValue): string | undefined =>
    typeof v === 'string' ? v : v instanceof JsonNumber ? v.text : undefined;
  let offset: number | undefined;
  let size: number | undefined;
  for (const [key, v] of options) {
    switch (key) {
      case 'driver': {
        const f = text(v);
        if (f === undefined) return `Invalid parameter type for 'driver', expected: string`;
        into.format = f;
        break;
      }
      case 'file.driver':
        if (v !== 'file') return `option 'file.driver=${String(v)}' is not supported (blk io opens only host files)`;
        break;
      case 'file.filename':
      case 'file.aio': {
        const s = text(v);
        if (s === undefined) {
          return key === 'file.filename'
            ? "The 'file' block driver requires a file name"
            : `Invalid parameter type for 'file.aio', expected: string`;
        }
        if (key === 'file.aio' && !validAio(s)) return `Invalid parameter '${s}'`;
        if (key === 'file.filename') extras.filename = s;
        break;
      }
      case 'read-only':
      case 'force-share':
      case 'cache.no-flush':
      case 'cache.direct': {
        const b = onOff(key, v);
        if (typeof b === 'string') return b;
        if (key === 'read-only') into.readOnly = b;
        else if (key === 'force-share') into.forceShare = b;
        else if (key === 'cache.no-flush') into.cache = { ...into.cache, noFlush: b };
        else into.cache = { ...into.cache, direct: b };
        break;
      }
      case 'lazy-refcounts': {
        const b = onOff(key, v);
        if (typeof b === 'string') return b;
        into.lazyRefcounts = b;
        break;
      }
      case 'discard': {
        const u = typeof v === 'string' ? parseDiscard(v) : undefined;
        if (u === undefined) return `Invalid discard option: ${String(v)}`;
        into.unmap = u;
        break;
      }
      case 'node-name':
      case 'file.node-name':
      case 'backing.node-name': {
        const s = text(v);
        if (s === undefined || !nodeNameOk(s)) return `Invalid node-name: '${String(v)}'`;
        extras.nodeNames.set(key, s);
        break;
      }
      case 'backing':
        if (v !== null) return "option 'backing' is supported only as null (no backing file)";
        into.noBacking = true;
        break;
      case 'backing.driver': {
        const s = text(v);
        if (s === undefined) return `Invalid parameter type for 'backing.driver', expected: string`;
        into.backingFormat = s;
        break;
      }
      case 'cache-size':
      case 'l2-cache-size':
      case 'refcount-cache-size':
      case 'l2-cache-entry-size': {
        const n = sizeValue(key, v);
        if (typeof n === 'string') return n;
        extras.qcow2Cache.set(key, n);
        break;
      }
      case 'offset':
      case 'size': {
        const n = sizeValue(key, v);
        if (typeof n === 'string') return n;
        if (key === 'offset') offset = n;
        else size = n;
        break;
      }
      default:
        return `option '${key}' is not supported (blk io takes ${TAKEN})`;
    }
  }
  if (offset !== undefined || size !== undefined) {
    if (into.format !== 'raw') {
      const which = offset !== undefined ? 'offset' : 'size';
      return `Block format '${into.format ?? 'probed'}' does not support the option '${which}'`;
    }
    extras.window = size === undefined ? { offset: offset ?? 0 } : { offset: offset ?? 0, size };
  }
  return undefined;
}

/**
 * The options of a file name and the direct options given with it, merged (direct ones win),
 * applied to `into`; the path to open. Throws `invalid-argument` for a malformed json: name; returns
 * an error message for an option blk io cannot take.
 */
export function resolveFileOptions(
  name: string,
  direct: ReadonlyMap<string, OptionValue>,
  into: IoOpenOptions,
  /** `name` is qemu-img's --image-opts text (`driver=qcow2,file.filename=F`), read as a json: name is. */
  imageOpts = false,
): { path: string; extras: BlockOptionExtras } | string {
  const merged = new Map<string, OptionValue>();
  const json = imageOpts || isJsonFilename(name);
  const named = imageOpts ? parseOptionList(name) : json ? parseJsonFilename(name) : undefined;
  if (named) for (const [k, v] of named) merged.set(k, v);
  // `{"driver":"file","filename":F}` is the host file itself: to blk, F read as raw.
  if (json && merged.get('driver') === 'file' && !direct.has('driver')) {
    merged.set('driver', 'raw');
    if (merged.has('filename')) merged.set('file.filename', merged.get('filename')!);
    merged.delete('filename');
  }
  // A plain `filename` in a json: name is QEMU's error for a format driver (it wants `file`).
  if (json && merged.has('filename') && merged.get('driver') !== undefined && !merged.has('file.filename')) {
    return 'A block device must be specified for "file"';
  }
  for (const [k, v] of direct) merged.set(k, v);
  const extras: BlockOptionExtras = { nodeNames: new Map(), qcow2Cache: new Map() };
  if (json && !merged.has('file.filename') && merged.has('file')) {
    // "file": "name" refers to a node by name; blk io has no other nodes.
    return `Cannot find device='${String(merged.get('file'))}' nor node-name='${String(merged.get('file'))}'`;
  }
  const problem = applyBlockOptions(merged, into, extras);
  if (problem !== undefined) return problem;
  if (!json) {
    if (extras.filename !== undefined) return "Can't specify 'file' and 'filename' options at the same time";
    return { path: name, extras };
  }
  if (extras.filename === undefined) return "The 'file' block driver requires a file name";
  return { path: extras.filename, extras };
}
