/** qemu-io's read, readv and aio_read. */
import { type CmdInfo } from './command.js';
export declare const read: CmdInfo;
export declare const readv: CmdInfo;
export declare const aioRead: CmdInfo;
