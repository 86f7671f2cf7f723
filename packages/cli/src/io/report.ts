/** qemu-io's output formats: print_report(), dump_buffer(), cvtnum errors. */
import { cFixed, cvtstr, timestr } from '../format.js';

/** Elapsed time from a process.hrtime.bigint() start, as seconds. */
export function elapsed(start: bigint, end: bigint = process.hrtime.bigint()): number {
  return Number(end - start) / 1e9;
}

/**
 * The two lines after every read/write:
 * `wrote 512/512 bytes at offset 0` and
 * `512 bytes, 1 ops; 00.00 sec (4.832 MiB/sec and 9896.0910 ops/sec)`;
 * with -C one line `bytes,ops,time,bytes/sec,ops/sec`.
 */
export function printReport(
  op: string,
  seconds: number,
  offset: number,
  count: number,
  total: number,
  ops: number,
  parsable: boolean,
): string {
  const rate = (v: number) => (seconds > 0 ? v / seconds : Infinity);
  if (parsable) {
    return `${total},${ops},${timestr(seconds, true)},${cFixed(rate(total), 3)},${cFixed(rate(ops), 3)}\n`;
  }
  return (
    `${op} ${total}/${count} bytes at offset ${offset}\n`
    + `${cvtstr(total)}, ${ops} ops; ${timestr(seconds)} (${cvtstr(rate(total))}/sec and ${cFixed(rate(ops), 4)} ops/sec)\n`
  );
}

function isAlnum(c: number): boolean {
  return (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a);
}

/** `00000000:  cd cd ... cd  ................` lines (-v). */
export function dumpBuffer(buf: Uint8Array, offset: number): string {
  const lines: string[] = [];
  for (let i = 0; i < buf.length; i += 16) {
    const row = buf.subarray(i, Math.min(i + 16, buf.length));
    let line = `${(offset + i).toString(16).padStart(8, '0')}:  `;
    for (const b of row) line += `${b.toString(16).padStart(2, '0')} `;
    line += ' ';
    for (const b of row) line += isAlnum(b) ? String.fromCharCode(b) : '.';
    lines.push(line);
  }
  return lines.length ? `${lines.join('\n')}\n` : '';
}

/** print_cvtnum_err(). */
export function cvtnumError(kind: 'invalid' | 'range', arg: string): string {
  return kind === 'range'
    ? `Parsing error: argument too large -- ${arg}\n`
    : `Parsing error: non-numeric argument, or extraneous/unrecognized suffix -- ${arg}\n`;
}
