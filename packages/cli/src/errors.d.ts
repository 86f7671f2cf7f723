/** A bad command line or argument: printed as one line. */
export declare class UsageError extends Error {
    constructor(message: string);
}
/** A failure the command has already described; carries the exit code to use. */
export declare class ExitError extends Error {
    readonly exitCode: number;
    constructor(exitCode: number, message?: string);
}
export declare function debugEnabled(): boolean;
/** Called once the command line is parsed (blk.ts). */
export declare function setCommandContext(command: string, options: Record<string, unknown>, args?: readonly string[]): void;
/**
 * The option of each command that names the format of the opened image's
 * direct backing file. cow records no backing format, so a cow under a cow
 * is named on every command that opens it. Where qemu-img's own -F means
 * something else (compare: B's format; convert, rebase: the new backing
 * file's), a long option does the job.
 */
export declare const BACKING_FORMAT_OPTION: Readonly<Record<string, string>>;
/** The one-line description of an error (control characters escaped), without the `blk: ` prefix. */
export declare function describeError(err: unknown): string;
/** The blk commit command line that finishes an interrupted commit of `image`, with this command's format options. */
export declare function commitCommand(image: string): string;
/** Prints `blk: message` (and the stack under BLK_DEBUG) to stderr. */
export declare function reportError(err: unknown): void;
/** A warning line on stderr (control characters escaped). */
export declare function warn(message: string): void;
