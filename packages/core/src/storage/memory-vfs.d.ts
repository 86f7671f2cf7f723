import { MemoryFile } from './memory-storage.js';
import type { FileStat, Storage, Vfs, VfsOpenOptions } from './storage.js';
/**
 * An in-memory name space of files (and symlinks), for tests and for
 * browser-side use. Directories exist implicitly.
 */
export declare class MemoryVfs implements Vfs {
    private readonly cwdPath;
    readonly files: Map<string, MemoryFile>;
    readonly links: Map<string, string>;
    constructor(cwdPath?: string);
    /** Puts a file in place (replacing any) and returns it. */
    put(path: string, content?: Uint8Array | MemoryFile): MemoryFile;
    symlink(target: string, path: string): void;
    file(path: string): MemoryFile;
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
    private statResolved;
    private isDir;
    /** Resolves symlinks in every component (bounded, so a symlink loop is an error, not a hang). */
    private follow;
    private abs;
    private missing;
}
