/**
 * qemu-io's open and close: `open [-rsCnkU] [-t cache] [-i aio] [-d discard]
 * [-o options] path` opens a file when none is open (the flags mean what
 * they mean on blk io's command line, see open-options.ts), `close` closes it.
 */
import { type CmdInfo } from './command.js';
export declare const open: CmdInfo;
export declare const close: CmdInfo;
