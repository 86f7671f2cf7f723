/**
 * Number formatting exactly as QEMU's C code prints it (glibc printf rounding:
 * exact decimal expansion, ties to even), so outputs match qemu-img/qemu-io.
 */

/** The exact value of a finite double as numerator / 2^shift. */
function exactRational(x: number): { num: bigint; shift: bigint } {
  const view = new DataView(new ArrayBuffer(8));
  view.setFloat64(0, x);
  const hi = view.getUint32(0);
  const lo = view.getUint32(4);
  const exp = (hi >>> 20) & 0x7ff;
  let mant = (BigInt(hi & 0xfffff) << 32n) | BigInt(lo);
  let e: number;
  if (exp === 0) {
    e = -1074;
  } else {
    mant |= 1n << 52n;
    e = exp - 1075;
  }
  if (e >= 0) return { num: mant << BigInt(e), shift: 0n };
  return { num: mant, shift: BigInt(-e) };
}

/** printf("%.{digits}f", x) for x >= 0 with glibc's round-half-even on exact ties. */
export function cFixed(x: number, digits: number): string {
  if (!Number.isFinite(x)) return x > 0 ? 'inf' : x < 0 ? '-inf' : 'nan';
  const negative = x < 0 || Object.is(x, -0);
  const { num, shift } = exactRational(Math.abs(x));
  const scaled = num * 10n ** BigInt(digits);
  const den = 1n << shift;
  let q = scaled / den;
  const r2 = (scaled % den) * 2n;
  if (r2 > den || (r2 === den && q % 2n === 1n)) q += 1n;
  let s = q.toString();
  if (digits > 0) {
    s = s.padStart(digits + 1, '0');
    s = `${s.slice(0, -digits)}.${s.slice(-digits)}`;
  }
  return negative ? `-${s}` : s;
}

/** printf("%0{width}.{digits}f", x). */
export function cFixedPad(x: number, width: number, digits: number): string {
  return cFixed(x, digits).padStart(width, '0');
}

/** printf("%.3g", x) for 1e-4 <= x < 1000 (what size_to_str needs), and 0. */
export function cG3(x: number): string {
  if (x === 0) return '0';
  let exp = Math.floor(Math.log10(x));
  // Correct log10's rounding near exact powers of ten.
  if (10 ** exp > x) exp -= 1;
  if (10 ** (exp + 1) <= x) exp += 1;
  let s = cFixed(x, Math.max(0, 2 - exp));
  // Rounding carried into a new leading digit (9.995 -> 10.0): one decimal fewer.
  if (Number(s) >= 10 ** (exp + 1)) s = cFixed(x, Math.max(0, 1 - exp));
  if (s.includes('.')) s = s.replace(/0+$/, '').replace(/\.$/, '');
  return s;
}

/** qemu-io's cvtstr(): `64 KiB`, `1.500 KiB`, `512 bytes`, `500.500000 bytes`. */
export function cvtstr(value: number): string {
  const units: Array<[number, string]> = [
    [2 ** 60, ' EiB'],
    [2 ** 50, ' PiB'],
    [2 ** 40, ' TiB'],
    [2 ** 30, ' GiB'],
    [2 ** 20, ' MiB'],
    [2 ** 10, ' KiB'],
  ];
  let str = '';
  let suffix = ' bytes';
  let found = false;
  for (const [unit, sfx] of units) {
    if (value >= unit) {
      str = cFixed(value / unit, 3);
      suffix = sfx;
      found = true;
      break;
    }
  }
  if (!found) str = cFixed(value, 6);
  const trim = str.indexOf('.000');
  return trim >= 0 ? str.slice(0, trim) + suffix : str + suffix;
}

/** qemu-img's size_to_str(): `1 MiB`, `196 KiB`, `0.977 KiB`, `512 B`. */
export function sizeToStr(value: number): string {
  const suffixes = ['', 'Ki', 'Mi', 'Gi', 'Ti', 'Pi', 'Ei'];
  const x = value / (1000 / 1024);
  let e = 0;
  if (x > 0) {
    // frexp: x = m * 2^e with m in [0.5, 1).
    e = Math.floor(Math.log2(x)) + 1;
    while (2 ** (e - 1) > x) e -= 1;
    while (2 ** e <= x) e += 1;
  }
  const i = Math.min(6, Math.max(0, Math.trunc((e - 1) / 10)));
  const div = 2 ** (i * 10);
  return `${cG3(value / div)} ${suffixes[i]}B`;
}

/** qemu-io's timestr() without flags: `00.00 sec`, or `0:00:01.23` from one second up. */
export function timestr(seconds: number, verbose = false): string {
  const whole = Math.floor(seconds);
  const frac = seconds - whole;
  if (verbose || whole > 0) {
    const h = Math.floor(whole / 3600);
    const m = Math.floor((whole % 3600) / 60);
    const s = (whole % 60) + frac;
    return `${h}:${String(m).padStart(2, '0')}:${cFixedPad(s, 5, 2)}`;
  }
  return `${cFixedPad(frac, 5, 2)} sec`;
}
