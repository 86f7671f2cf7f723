export interface UmlDisk {
    /** The COW file (or a raw disk when there is no backing). */
    file: string;
    /** Backing file given on the command line (`ubdN=cow,backing`). */
    backing?: string;
    /** Open read-only (`ubdNr=`). */
    readOnly?: boolean;
}
export interface UmlRun {
    /** Console log (kernel messages + the script's output). */
    log: string;
    /** `UMLINIT:` lines, without the prefix. */
    markers: string[];
    code: number | null;
    /** The init script started: UML itself works on this machine. */
    started: boolean;
    /** The init script reached its end. */
    finished: boolean;
    ms: number;
    /** Directory the script wrote into ($OUT inside UML). */
    outDir: string;
}
export declare const UML_TIMEOUT_SEC: number;
/** Why UML cannot be used here, or undefined. */
export declare function umlUnavailable(): string | undefined;
/** Device node of disk `i` inside UML. */
export declare const ubd: (i: number) => string;
/**
 * Boots UML once with the given disks and init script body (POSIX sh,
 * runs as PID 1 with PATH set, /proc and /sys mounted and $OUT mounted).
 */
export declare function bootUml(dir: string, disks: UmlDisk[], body: string, timeoutSec?: number): Promise<UmlRun>;
/** The last lines of a UML log, for messages. */
export declare function logTail(run: UmlRun, lines?: number): string;
