/** Byte comparison with failure messages that say where and what. */

/** Index of the first byte where `a` and `b` differ, or -1 when they are equal (lengths included). */
export function firstDifference(a: Uint8Array, b: Uint8Array): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return i;
  return a.length === b.length ? -1 : n;
}

function hex(bytes: Uint8Array, from: number, count: number): string {
  const end = Math.min(bytes.length, from + count);
  const out: string[] = [];
  for (let i = from; i < end; i++) out.push(bytes[i]!.toString(16).padStart(2, '0'));
  return out.join(' ') || '(none)';
}

/** Throws an Error naming the first differing guest offset unless `actual` equals `expected`. */
export function assertBytesEqual(actual: Uint8Array, expected: Uint8Array, what: string, baseOffset = 0): void {
  const at = firstDifference(actual, expected);
  if (at < 0) return;
  if (actual.length !== expected.length) {
    throw new Error(`${what}: got ${actual.length} bytes, expected ${expected.length}`);
  }
  let differing = 0;
  for (let i = at; i < actual.length; i++) if (actual[i] !== expected[i]) differing++;
  const from = Math.max(0, at - 4);
  throw new Error(
    `${what}: ${differing} byte(s) differ, the first at guest offset ${baseOffset + at}`
      + ` (index ${at} of ${actual.length});\n  got      [${baseOffset + from}..]: ${hex(actual, from, 16)}`
      + `\n  expected [${baseOffset + from}..]: ${hex(expected, from, 16)}`,
  );
}

/** True when every byte of `bytes` is zero. */
export function isAllZero(bytes: Uint8Array): boolean {
  for (let i = 0; i < bytes.length; i++) if (bytes[i] !== 0) return false;
  return true;
}

/** True when any byte of `mask[start, end)` is set. */
export function anySet(mask: Uint8Array, start: number, end: number): boolean {
  for (let i = start; i < end; i++) if (mask[i] !== 0) return true;
  return false;
}
