/**
 * getopt(3) as glibc does it for qemu-io's commands: options may come before
 * or after the operands (GNU permutation), `-abc` bundles flags, `-P5` and
 * `-P 5` both give a value, `--` ends the options.
 */
export type GetoptResult = {
    ok: true;
    flags: Map<string, string | true>;
    operands: string[];
} | {
    ok: false;
    message: string;
};
export declare function getopt(args: readonly string[], optstring: string, name: string): GetoptResult;
