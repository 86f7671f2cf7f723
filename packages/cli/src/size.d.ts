export type SizeParse = {
    ok: true;
    value: number;
} | {
    ok: false;
    error: 'invalid' | 'range';
};
/** Parses `text` the way QEMU's qemu_strtosz does (default unit: bytes). */
export declare function parseSizeResult(text: string): SizeParse;
/** Parses a size or throws a UsageError naming `what`. */
export declare function parseSize(text: string, what?: string): number;
/** QEMU's qemu_strtoul (base 0: decimal, 0x hex, 0 octal), up to `max`; undefined when invalid. */
export declare function parseUnsigned(text: string, max: number): number | undefined;
/**
 * `size` rounded up to whole 512-byte sectors, as qemu-img's drivers round a
 * new image's size (`create -f raw x 1234` makes a 1536-byte file).
 */
export declare function wholeSectors(size: number): number;
