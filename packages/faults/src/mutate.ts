import type { Rng } from './rng.js';

/** A fixed-width integer field of a header, for field-aware mutation. */
export interface FieldSpec {
  name?: string;
  offset: number;
  size: 1 | 2 | 4 | 8;
  endian: 'be' | 'le';
}

/** Values that break size arithmetic: zero, one, sign and width boundaries, sector and page sizes. */
const INTERESTING: readonly bigint[] = [
  0n,
  1n,
  2n,
  7n,
  8n,
  511n,
  512n,
  513n,
  4095n,
  4096n,
  4097n,
  65536n,
  0x7fn,
  0x80n,
  0xffn,
  0x7fffn,
  0x8000n,
  0xffffn,
  0x7fffffffn,
  0x80000000n,
  0xffffffffn,
  0x100000000n,
  2n ** 40n,
  2n ** 50n,
  2n ** 53n - 1n,
  2n ** 53n,
  2n ** 60n,
  2n ** 62n,
  0x7fffffffffffffffn,
  0x8000000000000000n,
  0xffffffffffffffffn,
];

/** Odd backing paths: empty, relative, dot-dot, control bytes, invalid UTF-8, very long, no NUL. */
function oddPath(rng: Rng): Uint8Array {
  const pick = rng.int(9);
  const enc = (s: string) => new TextEncoder().encode(s);
  switch (pick) {
    case 0:
      return new Uint8Array(0);
    case 1:
      return enc('../../../../etc/passwd');
    case 2:
      return enc('relative/base.img');
    case 3:
      return Uint8Array.from([0x2f, 0xff, 0xfe, 0xc0, 0x80, 0x2f, 0x01, 0x0a]);
    case 4:
      return enc(`/${'a'.repeat(rng.range(200, 5000))}`);
    case 5:
      return enc('/dev/zero');
    case 6:
      return enc('/proc/self/mem');
    case 7:
      return enc('/tmp/x\u0000hidden');
    default:
      return rng.bytes(rng.range(1, 300));
  }
}

export interface MutateOptions {
  /** Integer fields to set to boundary values. */
  fields?: readonly FieldSpec[];
  /** Where a path field starts and how long it is, for path mutations. */
  pathField?: { offset: number; length: number };
  /** Upper bound of the output length (default 64 KiB + input length). */
  maxLength?: number;
}

/**
 * A deterministic mutator (AFL-style havoc, plus header-aware moves): bit
 * flips, random bytes, interesting integers written into known header
 * fields, truncations, extensions, odd backing paths, block copies. The
 * input is not changed; the output depends only on `rng`'s state.
 */
export function mutate(rng: Rng, input: Uint8Array, options: MutateOptions = {}): Uint8Array {
  let data = input.slice();
  const maxLength = options.maxLength ?? input.length + 65536;
  const rounds = 1 + rng.int(rng.bool(0.8) ? 3 : 8);
  for (let r = 0; r < rounds; r++) {
    const move = rng.int(10);
    if (move === 0 && data.length > 0) {
      for (let k = rng.range(1, 8); k > 0; k--) {
        const bit = rng.int(data.length * 8);
        data[bit >> 3] = data[bit >> 3]! ^ (1 << (bit & 7));
      }
    } else if (move === 1 && data.length > 0) {
      for (let k = rng.range(1, 16); k > 0; k--) data[rng.int(data.length)] = rng.u32() & 0xff;
    } else if ((move === 2 || move === 3 || move === 4) && options.fields && options.fields.length > 0) {
      const field = rng.pick(options.fields);
      let value = rng.pick(INTERESTING);
      if (rng.bool(0.2)) value += BigInt(rng.range(-2, 2));
      if (rng.bool(0.1)) value = BigInt(rng.u32()) * 4294967296n + BigInt(rng.u32());
      writeField(data, field, value);
    } else if (move === 5) {
      // Truncate: often exactly at or around a field boundary.
      const cut =
        options.fields && rng.bool(0.5)
          ? Math.max(0, rng.pick(options.fields).offset + rng.range(-1, 8))
          : rng.int(data.length + 1);
      data = data.slice(0, Math.min(cut, data.length));
    } else if (move === 6 && data.length < maxLength) {
      const extra = rng.bytes(Math.min(maxLength - data.length, rng.range(1, 4096)));
      if (rng.bool(0.5)) extra.fill(0);
      const out = new Uint8Array(data.length + extra.length);
      out.set(data);
      out.set(extra, data.length);
      data = out;
    } else if (move === 7 && options.pathField) {
      const { offset, length } = options.pathField;
      if (offset < data.length) {
        const bytes = oddPath(rng);
        const end = Math.min(data.length, offset + length);
        data.fill(0, offset, end);
        const noNul = rng.bool(0.2);
        const n = Math.min(bytes.length, end - offset);
        data.set(bytes.subarray(0, n), offset);
        if (noNul) data.fill(0x41, offset + n, end);
      }
    } else if (move === 8 && data.length > 1) {
      const len = rng.range(1, Math.min(512, data.length));
      const from = rng.int(data.length - len + 1);
      const to = rng.int(data.length - len + 1);
      data.copyWithin(to, from, from + len);
    } else if (data.length > 0) {
      const from = rng.int(data.length);
      const to = Math.min(data.length, from + rng.range(1, 256));
      data.fill(rng.bool(0.5) ? 0 : 0xff, from, to);
    }
  }
  return data.length > maxLength ? data.slice(0, maxLength) : data;
}

export function writeField(data: Uint8Array, field: FieldSpec, value: bigint): void {
  if (field.offset + field.size > data.length) return;
  const width = BigInt(field.size * 8);
  let v = BigInt.asUintN(Number(width), value);
  for (let i = 0; i < field.size; i++) {
    const byte = Number(v & 0xffn);
    v >>= 8n;
    const at = field.endian === 'le' ? field.offset + i : field.offset + field.size - 1 - i;
    data[at] = byte;
  }
}
