/**
 * Test helpers: every CLI test runs the built executable as a user would
 * (`node packages/cli/dist/blk.js ...` in a child process).
 */
import { type ChildProcess } from 'node:child_process';
export declare const CLI_DIR: string;
export declare const REPO: string;
export declare const BLK: string;
/**
 * Builds the CLI when dist/ is missing or older than src/ or the bundled
 * packages' dist/ (and the packages it depends on when @blk/images has no
 * dist yet). Test files run in
 * parallel: a lock directory makes one of them build while the others wait.
 */
export declare function ensureBuilt(): void;
export interface Result {
    code: number | null;
    signal: NodeJS.Signals | null;
    stdout: string;
    stderr: string;
}
export interface RunOptions {
    cwd?: string;
    input?: string;
    env?: Record<string, string | undefined>;
    timeout?: number;
}
/** Runs `blk ARGS...` and waits for it. */
export declare function blk(args: string[], o?: RunOptions): Result;
/** Starts `blk ARGS...` without waiting (for interruption tests). */
export declare function blkSpawn(args: string[], o?: RunOptions): ChildProcess;
/** A fresh directory under the system's temporary directory. */
export declare function tempDir(label: string): string;
/** qemu-iotests' _filter_qemu_io: hides the timing of the report lines and qemu-io's prompt. */
export declare function filterQemuIo(text: string): string;
/** Writes a raw file of `size` bytes, filling the given [offset, length, byte] ranges; the rest is a hole. */
export declare function rawFile(file: string, size: number, fills?: Array<[number, number, number]>): void;
/** Bytes the file occupies on disk. */
export declare function diskUsage(file: string): number;
export declare function hasCommand(cmd: string): boolean;
/** Runs a shell command line under a pseudo-terminal (util-linux `script`), returning what it printed. */
export declare function underPty(commandLine: string, cwd: string): Result;
export declare function shellQuote(s: string): string;
/** Waits until `cond()` holds (polling), or throws after `ms`. */
export declare function waitFor(cond: () => boolean, ms: number, what: string): Promise<void>;
/** Resolves with the exit code/signal of a spawned child. */
export declare function exited(child: ChildProcess): Promise<{
    code: number | null;
    signal: NodeJS.Signals | null;
}>;
/**
 * A cow overlay over a raw base (`size` bytes, filled with `baseByte`) in
 * which every other 512-byte sector is allocated and holds `topByte`:
 * many short runs, so that copying it takes a while (interruption tests).
 */
export declare function alternatingOverlay(dir: string, name: string, size: number, baseByte?: number, topByte?: number): {
    base: string;
    overlay: string;
};
/** What the alternating overlay reads as: sector n is topByte for even n, baseByte for odd n. */
export declare function alternatingExpected(file: string, size: number, baseByte?: number, topByte?: number): void;
/** `blk compare A B` says the guest-visible contents are identical (exit 0, nothing on stderr). */
export declare function expectSameImages(a: string, b: string): void;
/** Runs qemu-img with its program name in messages swapped for blk's, so that both outputs compare. */
export declare function qemuImgAsBlk(args: string[]): Result;
/** Runs the real `qemu-io ARGS...` (tests skip themselves where it is not installed). */
export declare function qemuIo(args: string[], o?: {
    cwd?: string;
    input?: string;
}): Result;
