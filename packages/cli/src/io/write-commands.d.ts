/**
 * qemu-io's write, writev, aio_write and discard. `-z` asks the image for
 * zeroes (`Image.writeZeroes`: no buffer; with `-u` the range may be left
 * deallocated where it then reads as zeros), as qemu-io does.
 */
import { type CmdInfo } from './command.js';
export declare const write: CmdInfo;
export declare const writev: CmdInfo;
export declare const aioWrite: CmdInfo;
export declare const discard: CmdInfo;
