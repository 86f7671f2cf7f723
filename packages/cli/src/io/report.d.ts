/** Elapsed time from a process.hrtime.bigint() start, as seconds. */
export declare function elapsed(start: bigint, end?: bigint): number;
/**
 * The two lines after every read/write:
 * `wrote 512/512 bytes at offset 0` and
 * `512 bytes, 1 ops; 00.00 sec (4.832 MiB/sec and 9896.0910 ops/sec)`;
 * with -C one line `bytes,ops,time,bytes/sec,ops/sec`.
 */
export declare function printReport(op: string, seconds: number, offset: number, count: number, total: number, ops: number, parsable: boolean): string;
/** `00000000:  cd cd ... cd  ................` lines (-v). */
export declare function dumpBuffer(buf: Uint8Array, offset: number): string;
/** print_cvtnum_err(). */
export declare function cvtnumError(kind: 'invalid' | 'range', arg: string): string;
