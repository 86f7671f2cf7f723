/**
 * qemu-img's `-o key=value,key=value` creation options, mapped to blk's
 * createImage options. `,,` stands for a literal comma, as in QEMU.
 */
import { type PreallocationMode } from '@blk/core';
export interface CreateOptionSet {
    size?: number;
    backingFile?: string;
    backingFormat?: string;
    preallocation?: PreallocationMode;
    driverOptions: Record<string, unknown>;
    /** key=value pairs as given, for the `Formatting ...` line. */
    given: Array<[string, string]>;
    help: boolean;
}
/** Splits `a=1,b=x,,y` into pairs (`,,` is a literal comma). */
export declare function splitOptionList(list: string): Array<[string, string | undefined]>;
export declare function formatOptionHelp(format: string): string;
/** Interprets every `-o` argument for a new image of `format`; errors name `file`, the image being made (as qemu-img's). */
export declare function parseCreateOptions(format: string, lists: string[], file?: string): CreateOptionSet;
/** A preallocation mode named on the command line (-o preallocation=, --preallocation=). */
export declare function parsePreallocation(value: string): PreallocationMode;
