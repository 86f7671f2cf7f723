/**
 * Describing the exports of a server: QEMU-style key=value option strings (`--object`, `--export`),
 * a JSON exports file, and the checks every export list must pass. Portable: no Node built-ins.
 */
import { encoder, MAX_STRING } from './protocol.js';

/** One export as a command line or a config file describes it (before its image is opened). */
export interface ExportSpec {
  /** The export name ('' is the default export). */
  name: string;
  /** The image file. */
  file: string;
  format?: string;
  readOnly?: boolean;
  description?: string;
}

/** A malformed export or object description. */
export class ExportSpecError extends Error {
  override readonly name = 'ExportSpecError';
}

/**
 * Splits a QEMU option string (`a=1,b,c=x,,y`) into [key, value] pairs in order: `,,` stands for a
 * literal comma; an element without `=` has the value undefined (a flag, or QEMU's implied first key).
 */
export function parseKeyval(text: string): Array<[string, string | undefined]> {
  const parts: string[] = [];
  let cur = '';
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (c === ',') {
      if (text[i + 1] === ',') {
        cur += ',';
        i++;
        continue;
      }
      parts.push(cur);
      cur = '';
    } else cur += c;
  }
  parts.push(cur);
  return parts.map((p) => {
    const eq = p.indexOf('=');
    return eq < 0 ? [p, undefined] : [p.slice(0, eq), p.slice(eq + 1)];
  });
}

/** QEMU's boolean option values. */
export function parseBool(value: string | undefined, what: string): boolean {
  if (value === undefined || value === 'on' || value === 'yes' || value === 'true') return true;
  if (value === 'off' || value === 'no' || value === 'false') return false;
  throw new ExportSpecError(`${what}: expected on or off, not '${value}'`);
}

/**
 * `NAME=FILE[,ro][,format=FMT][,description=TEXT]` (a comma inside a value is written `,,`, as QEMU
 * writes it): one export of `blk serve --export`.
 */
export function parseExportSpec(text: string): ExportSpec {
  const [first, ...rest] = parseKeyval(text);
  const [name, file] = first!;
  if (file === undefined || file === '') {
    throw new ExportSpecError(`export '${text}': expected NAME=FILE[,ro][,format=FMT][,description=TEXT]`);
  }
  const spec: ExportSpec = { name, file };
  const seen = new Set<string>();
  for (const [key, value] of rest) {
    if (seen.has(key)) throw new ExportSpecError(`export '${name}': '${key}' given twice`);
    seen.add(key);
    switch (key) {
      case 'ro':
      case 'readonly':
        spec.readOnly = parseBool(value, `export '${name}': ${key}`);
        break;
      case 'format':
        if (!value) throw new ExportSpecError(`export '${name}': format needs a value`);
        spec.format = value;
        break;
      case 'description':
        if (value === undefined) throw new ExportSpecError(`export '${name}': description needs a value`);
        spec.description = value;
        break;
      default:
        throw new ExportSpecError(`export '${name}': unknown option '${key}' (ro, format, description)`);
    }
  }
  return spec;
}

const CONFIG_KEYS = new Set(['name', 'file', 'format', 'readOnly', 'description']);

/**
 * The exports of a JSON exports file: `{ "exports": [ { "name", "file", "format"?, "readOnly"?,
 * "description"? }, ... ] }`. `resolve` turns each file name into a path (relative names are relative to
 * the config file, as the CLI resolves them).
 */
export function parseExportsConfig(json: unknown, where: string, resolve: (file: string) => string): ExportSpec[] {
  const fail = (msg: string): never => {
    throw new ExportSpecError(`${where}: ${msg}`);
  };
  if (typeof json !== 'object' || json === null || Array.isArray(json)) fail('expected an object with "exports"');
  const top = json as Record<string, unknown>;
  for (const k of Object.keys(top)) if (k !== 'exports') fail(`unknown key "${k}"`);
  if (!Array.isArray(top.exports)) fail('"exports" must be an array');
  return (top.exports as unknown[]).map((e, i) => {
    const at = `exports[${i}]`;
    if (typeof e !== 'object' || e === null || Array.isArray(e)) return fail(`${at}: expected an object`);
    const o = e as Record<string, unknown>;
    for (const k of Object.keys(o)) if (!CONFIG_KEYS.has(k)) fail(`${at}: unknown key "${k}"`);
    if (typeof o.name !== 'string') fail(`${at}: "name" must be a string`);
    if (typeof o.file !== 'string' || o.file === '') fail(`${at}: "file" must be a non-empty string`);
    if (o.format !== undefined && (typeof o.format !== 'string' || o.format === '')) {
      fail(`${at}: "format" must be a non-empty string`);
    }
    if (o.readOnly !== undefined && typeof o.readOnly !== 'boolean') fail(`${at}: "readOnly" must be true or false`);
    if (o.description !== undefined && typeof o.description !== 'string') fail(`${at}: "description" must be a string`);
    const spec: ExportSpec = { name: o.name as string, file: resolve(o.file as string) };
    if (o.format !== undefined) spec.format = o.format as string;
    if (o.readOnly !== undefined) spec.readOnly = o.readOnly as boolean;
    if (o.description !== undefined) spec.description = o.description as string;
    return spec;
  });
}

/**
 * Refuses export lists a client could not use: names and descriptions must be NBD strings (UTF-8 without
 * NUL, at most 4096 bytes) and names unique.
 */
export function checkExports(list: ReadonlyArray<{ name: string; description?: string }>): void {
  const names = new Set<string>();
  for (const e of list) {
    const shown = e.name.length > 64 ? `${e.name.slice(0, 64)}...` : e.name;
    if (e.name.includes('\0')) throw new ExportSpecError(`export name '${shown}' contains a NUL byte`);
    if (encoder.encode(e.name).length > MAX_STRING) {
      throw new ExportSpecError(`export name '${shown}' is longer than ${MAX_STRING} bytes`);
    }
    if (e.description !== undefined) {
      if (e.description.includes('\0')) throw new ExportSpecError(`export '${shown}': description contains a NUL byte`);
      if (encoder.encode(e.description).length > MAX_STRING) {
        throw new ExportSpecError(`export '${shown}': description longer than ${MAX_STRING} bytes`);
      }
    }
    if (names.has(e.name)) throw new ExportSpecError(`export '${shown}' is given twice`);
    names.add(e.name);
  }
}
