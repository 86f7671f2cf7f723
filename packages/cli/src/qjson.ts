/**
 * JSON as qemu-img prints it (qobject_to_json_pretty): four-space indents,
 * `"key": value`, non-ASCII as \uXXXX, and object keys in the order QEMU's
 * QDict iterates them. A QDict is a hash table of 512 buckets (tdb_hash of
 * the key); iteration walks the buckets in order and, inside a bucket, the
 * latest insertion first. Reproducing that order makes `blk info
 * --output=json` byte-identical to qemu-img's for the same fields.
 */

export type QValue = string | number | boolean | null | QValue[] | { [key: string]: QValue | undefined };

const BUCKETS = 512;

/** QEMU's tdb_hash(), in 32-bit unsigned arithmetic. */
export function tdbHash(name: string): number {
  const bytes = new TextEncoder().encode(name);
  let value = Math.imul(0x238f13af, bytes.length) >>> 0;
  for (let i = 0; i < bytes.length; i++) {
    value = (value + ((bytes[i]! << ((i * 5) % 24)) >>> 0)) >>> 0;
  }
  return (Math.imul(1103515243, value) + 12345) >>> 0;
}

/** The keys of `obj` (undefined values dropped) in QDict iteration order. */
export function qdictOrder(obj: Record<string, unknown>): string[] {
  const keys = Object.keys(obj).filter((k) => obj[k] !== undefined);
  const indexed = keys.map((key, index) => ({ key, index, bucket: tdbHash(key) % BUCKETS }));
  indexed.sort((a, b) => a.bucket - b.bucket || b.index - a.index);
  return indexed.map((e) => e.key);
}

function quote(str: string): string {
  let out = '"';
  for (const ch of str) {
    const cp = ch.codePointAt(0)!;
    switch (ch) {
      case '"':
        out += '\\"';
        break;
      case '\\':
        out += '\\\\';
        break;
      case '\b':
        out += '\\b';
        break;
      case '\f':
        out += '\\f';
        break;
      case '\n':
        out += '\\n';
        break;
      case '\r':
        out += '\\r';
        break;
      case '\t':
        out += '\\t';
        break;
      default:
        if (cp > 0xffff) {
          const hi = 0xd800 + ((cp - 0x10000) >> 10);
          const lo = 0xdc00 + ((cp - 0x10000) & 0x3ff);
          out += `\\u${hex4(hi)}\\u${hex4(lo)}`;
        } else if (cp < 0x20 || cp >= 0x7f) {
          out += `\\u${hex4(cp)}`;
        } else {
          out += ch;
        }
    }
  }
  return `${out}"`;
}

function hex4(n: number): string {
  return n.toString(16).toUpperCase().padStart(4, '0');
}

function newline(indent: number): string {
  return `\n${'    '.repeat(indent)}`;
}

/** Serialises `value` as qemu-img's pretty JSON (no trailing newline). */
export function toQemuJson(value: QValue, indent = 0): string {
  if (value === null) return 'null';
  if (typeof value === 'string') return quote(value);
  if (typeof value === 'boolean') return value ? 'true' : 'false';
  // Integers print as QEMU prints them; blk has no non-integer fields.
  if (typeof value === 'number') return String(value);
  if (Array.isArray(value)) {
    let out = '[';
    value.forEach((item, i) => {
      if (i > 0) out += ',';
      out += newline(indent + 1) + toQemuJson(item, indent + 1);
    });
    return `${out}${newline(indent)}]`;
  }
  let out = '{';
  qdictOrder(value).forEach((key, i) => {
    if (i > 0) out += ',';
    out += `${newline(indent + 1)}${quote(key)}: ${toQemuJson(value[key]!, indent + 1)}`;
  });
  return `${out}${newline(indent)}}`;
}
