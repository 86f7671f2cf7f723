/** qemu-io's flush, aio_flush, sleep and quit. */
import type { CmdInfo } from './command.js';
export declare const aioFlush: CmdInfo;
export declare const flush: CmdInfo;
export declare const sleep: CmdInfo;
export declare const quit: CmdInfo;
