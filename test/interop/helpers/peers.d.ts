export interface Peer {
    /** Executable name. */
    bin: string;
    /** Debian package that ships it. */
    pkg: string;
}
export declare const PEERS: {
    readonly umlMkcow: {
        readonly bin: "uml_mkcow";
        readonly pkg: "uml-utilities";
    };
    readonly umlMoo: {
        readonly bin: "uml_moo";
        readonly pkg: "uml-utilities";
    };
    readonly linuxUml: {
        readonly bin: "linux.uml";
        readonly pkg: "user-mode-linux";
    };
    readonly qemuImg: {
        readonly bin: "qemu-img";
        readonly pkg: "qemu-utils";
    };
    readonly qemuIo: {
        readonly bin: "qemu-io";
        readonly pkg: "qemu-utils";
    };
    readonly nbdkit: {
        readonly bin: "nbdkit";
        readonly pkg: "nbdkit";
    };
    readonly nbdinfo: {
        readonly bin: "nbdinfo";
        readonly pkg: "libnbd-bin";
    };
    readonly nbdcopy: {
        readonly bin: "nbdcopy";
        readonly pkg: "libnbd-bin";
    };
    /** Used by the UML tests to bound every run. */
    readonly timeout: {
        readonly bin: "timeout";
        readonly pkg: "coreutils";
    };
    readonly cp: {
        readonly bin: "cp";
        readonly pkg: "coreutils";
    };
};
/** Absolute path of an executable on PATH (plus the sbin directories), or undefined. */
export declare function which(bin: string): string | undefined;
/** Why the given peers cannot be used here (one line), or undefined when all are installed. */
export declare function missingPeers(...peers: Peer[]): string | undefined;
/** True when skips must become failures (CI with the peers installed). */
export declare function skipsAreFailures(): boolean;
/** The part of vitest's test context we need. */
export interface SkipContext {
    skip: (note?: string) => never;
}
/**
 * Skips the running test (loudly) when `reason` is set; with
 * BLK_INTEROP_REQUIRE=1 it fails instead.
 */
export declare function skipUnless(ctx: SkipContext, reason: string | undefined): void;
/** Skips the running test unless every peer is installed. */
export declare function needPeers(ctx: SkipContext, ...peers: Peer[]): void;
export interface RunResult {
    code: number | null;
    signal: NodeJS.Signals | null;
    stdout: string;
    stderr: string;
    /** Wall time in milliseconds. */
    ms: number;
}
export interface RunOptions {
    cwd?: string;
    env?: NodeJS.ProcessEnv;
    /** Kill the process (SIGKILL) after this many milliseconds. Default 60 s. */
    timeoutMs?: number;
    input?: string | Uint8Array;
}
/** Runs a program without a shell and collects its output. Never rejects for a non-zero exit. */
export declare function run(cmd: string, args: string[], options?: RunOptions): Promise<RunResult>;
/** Runs a program and throws (with its output) unless it exits 0. */
export declare function runOk(cmd: string, args: string[], options?: RunOptions): Promise<RunResult>;
/** Installed version of a Debian package (dpkg-query), or undefined. */
export declare function debVersion(pkg: string): string | undefined;
/** One line per peer with the versions found here (for logs and the README). */
export declare function peerVersions(): string[];
