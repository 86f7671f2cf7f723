import { type NodeIoMode, type PositionalSyscalls } from './node-storage.js';
import type { FileAttributes, FileStat, Storage, Vfs, VfsOpenOptions } from '../storage/storage.js';
export interface NodeVfsOptions {
    /** How files talk to the kernel (see NodeIoMode); default 'sync'. */
    io?: NodeIoMode;
    /** `io: 'sync'` only: positional system calls to use instead of Node's (see PositionalSyscalls). */
    syscalls?: PositionalSyscalls;
}
/** The host's file system. */
export declare class NodeVfs implements Vfs {
    private readonly options;
    constructor(options?: NodeVfsOptions);
    open(path: string, options?: VfsOpenOptions): Promise<Storage>;
    stat(path: string): Promise<FileStat>;
    lstat(path: string): Promise<FileStat>;
    realpath(path: string): Promise<string>;
    resolve(base: string, path: string): string;
    dirname(path: string): string;
    cwd(): string;
    exists(path: string): Promise<boolean>;
    remove(path: string): Promise<void>;
    rename(from: string, to: string): Promise<void>;
    setAttributes(path: string, attributes: FileAttributes): Promise<void>;
}
