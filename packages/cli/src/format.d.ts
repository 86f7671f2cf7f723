/**
 * Number formatting exactly as QEMU's C code prints it (glibc printf rounding:
 * exact decimal expansion, ties to even), so outputs match qemu-img/qemu-io.
 */
/** printf("%.{digits}f", x) for x >= 0 with glibc's round-half-even on exact ties. */
export declare function cFixed(x: number, digits: number): string;
/** printf("%0{width}.{digits}f", x). */
export declare function cFixedPad(x: number, width: number, digits: number): string;
/** printf("%.3g", x) for 1e-4 <= x < 1000 (what size_to_str needs), and 0. */
export declare function cG3(x: number): string;
/** qemu-io's cvtstr(): `64 KiB`, `1.500 KiB`, `512 bytes`, `500.500000 bytes`. */
export declare function cvtstr(value: number): string;
/** qemu-img's size_to_str(): `1 MiB`, `196 KiB`, `0.977 KiB`, `512 B`. */
export declare function sizeToStr(value: number): string;
/** qemu-io's timestr() without flags: `00.00 sec`, or `0:00:01.23` from one second up. */
export declare function timestr(seconds: number, verbose?: boolean): string;
