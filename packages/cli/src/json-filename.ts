/**
 * QEMU's `json:` pseudo-filenames (`json:{"driver":"qcow2","file":{"filename":"a.qcow2"}}`):
 * the JSON object parsed the way QEMU's parser reads it (its dialect also takes 'single-quoted'
 * strings; a duplicate key, trailing values or nesting past 1024 levels are errors) and flattened
 * the way qdict_flatten does (`{"file":{"filename":"x"}}` is `file.filename=x`, list items are
 * `key.0`, `key.1`), with QEMU's error texts. What the options mean is the business of whoever
 * opens the file (io/block-options.ts for blk io); this module only reads them, and reads them
 * strictly: it never evaluates anything and throws `invalid-argument` on anything malformed.
 *
 * A json: name is accepted only where the user names a file; a name read from inside an image
 * (a backing file name) is never parsed as one (see io/block-options.ts).
 */
import { BlockError } from '@blk/core';

/** A JSON number as written (QEMU keeps integers exact; blk judges them where they are used). */
export class JsonNumber {
  constructor(readonly text: string) {}
  toString(): string {
    return this.text;
  }
}

export type JsonScalar = string | boolean | null | JsonNumber;
type JsonValue = JsonScalar | JsonValue[] | { [key: string]: JsonValue };

/** QEMU's MAX_NESTING in json-parser-int.h. */
const MAX_NESTING = 1024;

export const JSON_PREFIX = 'json:';

export function isJsonFilename(name: string): boolean {
  return name.startsWith(JSON_PREFIX);
}

function parseError(what: string, name: string): BlockError {
  return new BlockError('invalid-argument', `Could not parse the JSON options: ${what}`, { path: name });
}

/** A recursive-descent reader of QEMU's JSON dialect. */
class Reader {
  private pos = 0;
  constructor(
    private readonly text: string,
    private readonly name: string,
  ) {}

  fail(what: string): never {
    throw parseError(`JSON parse error, ${what}`, this.name);
  }

  private skipSpace(): void {
    while (this.pos < this.text.length && ' \t\n\r'.includes(this.text[this.pos]!)) this.pos++;
  }

  /** The whole text as one value (QEMU: "Expecting at most one JSON value" after it). */
  document(): JsonValue {
    this.skipSpace();
    if (this.pos >= this.text.length) this.fail('premature EOI');
    const v = this.value(0);
    this.skipSpace();
    if (this.pos < this.text.length) throw parseError('Expecting at most one JSON value', this.name);
    return v;
  }

  private value(depth: number): JsonValue {
    this.skipSpace();
    if (this.pos >= this.text.length) this.fail('premature EOI');
    const c = this.text[this.pos]!;
    if (c === '{' || c === '[') {
      if (depth >= MAX_NESTING) this.fail('too many nested data structures');
      return c === '{' ? this.object(depth + 1) : this.array(depth + 1);
    }
    if (c === '"' || c === "'") return this.string();
    if (c === '-' || (c >= '0' && c <= '9')) return this.number();
    if (/[a-zA-Z]/.test(c)) {
      const word = /^[a-zA-Z]+/.exec(this.text.slice(this.pos))![0];
      this.pos += word.length;
      if (word === 'true') return true;
      if (word === 'false') return false;
      if (word === 'null') return null;
      this.fail(`invalid keyword '${word}'`);
    }
    this.fail('expecting value');
  }

  private object(depth: number): JsonValue {
    this.pos++; // {
    const out: { [key: string]: JsonValue } = Object.create(null) as { [key: string]: JsonValue };
    this.skipSpace();
    if (this.text[this.pos] === '}') {
      this.pos++;
      return out;
    }
    for (;;) {
      this.skipSpace();
      if (this.pos >= this.text.length) this.fail('premature EOI');
      const c = this.text[this.pos]!;
      if (c !== '"' && c !== "'") {
        if (/[a-zA-Z]/.test(c)) this.value(depth); // QEMU reports the keyword first
        this.fail('key is not a string in object');
      }
      const key = this.string();
      this.skipSpace();
      if (this.pos >= this.text.length) this.fail('premature EOI');
      if (this.text[this.pos] !== ':') this.fail('missing : in object pair');
      this.pos++;
      const v = this.value(depth);
      if (Object.hasOwn(out, key)) this.fail('duplicate key');
      out[key] = v;
      this.skipSpace();
      if (this.pos >= this.text.length) this.fail('premature EOI');
      const sep = this.text[this.pos++];
      if (sep === '}') return out;
      if (sep !== ',') this.fail('expected separator in dict');
    }
  }

  private array(depth: number): JsonValue {
    this.pos++; // [
    const out: JsonValue[] = [];
    this.skipSpace();
    if (this.text[this.pos] === ']') {
      this.pos++;
      return out;
    }
    for (;;) {
      out.push(this.value(depth));
      this.skipSpace();
      if (this.pos >= this.text.length) this.fail('premature EOI');
      const sep = this.text[this.pos++];
      if (sep === ']') return out;
      if (sep !== ',') this.fail('expected separator in list');
    }
  }

  private string(): string {
    const quote = this.text[this.pos++]!;
    let out = '';
    for (;;) {
      if (this.pos >= this.text.length) this.fail('premature EOI');
      const c = this.text[this.pos++]!;
      if (c === quote) return out;
      if (c.charCodeAt(0) < 0x20) this.fail('invalid character in string');
      if (c !== '\\') {
        out += c;
        continue;
      }
      if (this.pos >= this.text.length) this.fail('premature EOI');
      const e = this.text[this.pos++]!;
      const simple: Record<string, string> = {
        '"': '"',
        "'": "'",
        '\\': '\\',
        '/': '/',
        b: '\b',
        f: '\f',
        n: '\n',
        r: '\r',
        t: '\t',
      };
      if (e in simple) out += simple[e];
      else if (e === 'u' && /^[0-9a-fA-F]{4}$/.test(this.text.slice(this.pos, this.pos + 4))) {
        const code = Number.parseInt(this.text.slice(this.pos, this.pos + 4), 16);
        if (code === 0) this.fail('\\u0000 is not supported');
        out += String.fromCharCode(code);
        this.pos += 4;
      } else this.fail('invalid escape sequence in string');
    }
  }

  private number(): JsonNumber {
    const m = /^-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?/.exec(this.text.slice(this.pos));
    if (!m) this.fail('invalid number');
    this.pos += m[0].length;
    return new JsonNumber(m[0]);
  }
}

/**
 * The options of a `json:` filename, flattened (`file.filename`), in the order written. Throws
 * `invalid-argument` with QEMU's texts: `Could not parse the JSON options: JSON parse error, …`,
 * `Invalid JSON object given` when the value is not an object.
 */
export function parseJsonFilename(name: string): Map<string, JsonScalar> {
  if (!isJsonFilename(name)) throw new BlockError('invalid-argument', 'not a json: filename', { path: name });
  const value = new Reader(name.slice(JSON_PREFIX.length), name).document();
  if (value === null || typeof value !== 'object' || Array.isArray(value) || value instanceof JsonNumber) {
    throw new BlockError('invalid-argument', 'Invalid JSON object given', { path: name });
  }
  const out = new Map<string, JsonScalar>();
  flattenInto(value, '', out, name);
  return out;
}

/** qdict_flatten: nested objects and lists become dotted keys of scalars. */
function flattenInto(value: JsonValue, prefix: string, into: Map<string, JsonScalar>, name: string): void {
  const entries: [string, JsonValue][] = Array.isArray(value)
    ? value.map((v, i) => [String(i), v])
    : Object.entries(value as { [key: string]: JsonValue });
  for (const [k, v] of entries) {
    const key = `${prefix}${k}`;
    if (v !== null && typeof v === 'object' && !(v instanceof JsonNumber)) {
      flattenInto(v, `${key}.`, into, name);
      continue;
    }
    // `{"file":{"filename":"a"},"file.filename":"b"}` names one option twice: refuse unless equal.
    if (into.has(key) && String(into.get(key)) !== String(v)) {
      throw new BlockError('invalid-argument', `option '${key}' is given twice with different values`, {
        path: name,
      });
    }
    into.set(key, v);
  }
}
