/**
 * Sizes and offsets as qemu-img and qemu-io take them (QEMU's qemu_strtosz):
 *
 * - `12345`: bytes (decimal; leading zeros are still decimal);
 * - `12345` + one of `b B k K m M g G t T p P e E`: scaled by 1024^n (`k` = KiB);
 * - `1.5G`: a fraction needs a suffix larger than bytes; it is rounded to the
 *   nearest byte (halves up);
 * - `0x7fee`: hexadecimal, without fraction or suffix.
 *
 * Refused: negative numbers, exponents (`1e3`), hex with suffix, anything
 * trailing. Values above 2^53 - 1 (the largest offset blk handles exactly)
 * are out of range.
 */
import { UsageError } from './errors.js';

export type SizeParse = { ok: true; value: number } | { ok: false; error: 'invalid' | 'range' };

const SUFFIXES: Record<string, number> = { b: 0, k: 1, m: 2, g: 3, t: 4, p: 5, e: 6 };

/** Parses `text` the way QEMU's qemu_strtosz does (default unit: bytes). */
export function parseSizeResult(text: string): SizeParse {
  const m = /^[ \t\n\r\f\v]*\+?(\d+)(?:(\.\d*))?([a-zA-Z]?)$/.exec(text);
  if (!m) {
    const hex = /^[ \t\n\r\f\v]*\+?0[xX]([0-9a-fA-F]+)$/.exec(text);
    if (!hex) return { ok: false, error: 'invalid' };
    return finish(BigInt(`0x${hex[1]}`));
  }
  const intPart = m[1]!;
  const frac = m[2] ?? '';
  const suffix = m[3] ?? '';
  let power = 0;
  if (suffix !== '') {
    const p = SUFFIXES[suffix.toLowerCase()];
    if (p === undefined) return { ok: false, error: 'invalid' };
    power = p;
  }
  const mul = 1024n ** BigInt(power);
  let value = BigInt(intPart) * mul;
  const fracDigits = frac.slice(1);
  if (fracDigits.length > 0 && /[1-9]/.test(fracDigits)) {
    // A fraction needs a scale larger than bytes.
    if (power === 0) return { ok: false, error: 'invalid' };
    const den = 10n ** BigInt(fracDigits.length);
    const num = BigInt(fracDigits) * mul;
    let q = num / den;
    if ((num % den) * 2n >= den) q += 1n; // round halves up, as QEMU does
    value += q;
  }
  return finish(value);
}

function finish(value: bigint): SizeParse {
  if (value > BigInt(Number.MAX_SAFE_INTEGER)) return { ok: false, error: 'range' };
  return { ok: true, value: Number(value) };
}

/** Parses a size or throws a UsageError naming `what`. */
export function parseSize(text: string, what = 'size'): number {
  const r = parseSizeResult(text);
  if (r.ok) return r.value;
  if (r.error === 'range') {
    throw new UsageError(`${what} '${text}' is too large (the limit is ${Number.MAX_SAFE_INTEGER} bytes)`);
  }
  throw new UsageError(
    `invalid ${what} '${text}': use a number of bytes, optionally with a suffix `
      + 'k, M, G, T, P or E (powers of 1024), e.g. 64k, 10M, 1.5G',
  );
}

/** QEMU's qemu_strtoul (base 0: decimal, 0x hex, 0 octal), up to `max`; undefined when invalid. */
export function parseUnsigned(text: string, max: number): number | undefined {
  const m = /^[ \t\n\r\f\v]*\+?(?:0[xX]([0-9a-fA-F]+)|(0[0-7]*)|([1-9]\d*))$/.exec(text);
  if (!m) return undefined;
  const value = m[1] !== undefined ? parseInt(m[1], 16) : m[2] !== undefined ? parseInt(m[2], 8) : Number(m[3]);
  return Number.isSafeInteger(value) && value <= max ? value : undefined;
}

/**
 * `size` rounded up to whole 512-byte sectors, as qemu-img's drivers round a
 * new image's size (`create -f raw x 1234` makes a 1536-byte file).
 */
export function wholeSectors(size: number): number {
  return Math.ceil(size / 512) * 512;
}
