import type { CmdInfo } from './command.js';
export declare const alloc: CmdInfo;
export declare const mapCmd: CmdInfo;
export declare const length: CmdInfo;
export declare const info: CmdInfo;
