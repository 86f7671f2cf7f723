/**
 * What the jobs (commit, rebase, convert) share: options, opening images on a
 * Vfs with the CLI's backing policy, and the copy loop's helpers. Nothing here
 * touches node:fs or node:path: every file-system action goes through a Vfs.
 */
import { type BackingPolicy, type Image, type Vfs } from '@blk/core';
import { openImage } from '../images.js';
/** Large I/O unit for copy loops. */
export declare const CHUNK: number;
/** I/O unit of the convert and commit copy loops (larger requests, fewer round trips). */
export declare const COPY_CHUNK: number;
/** Chunks the convert and commit copy loops keep in flight (read one while writing another). */
export declare const COPY_DEPTH = 4;
/**
 * qemu-img's `-t CACHE` for the image a job writes:
 * - `writeback` (the default): flush (fsync) when the job is done, and at
 *   each step of its crash-safety protocol; the result is durable when the
 *   job returns.
 * - `unsafe`: never flush (qemu-img convert's own default, and what uml_moo
 *   does): faster, and safe against the process being killed (the page cache
 *   survives it), but a power loss or OS crash can lose or tear the result.
 * - `none`, `writethrough`, `directsync`: accepted for qemu-img compatibility
 *   and treated as `writeback` (blk has no O_DIRECT or O_DSYNC I/O).
 */
export type CacheMode = 'writeback' | 'unsafe' | 'none' | 'writethrough' | 'directsync';
export declare const CACHE_MODES: readonly CacheMode[];
/** Checks a `-t` value. */
export declare function parseCacheMode(value: string | undefined): CacheMode;
/** A job's progress: `done` of `total` bytes gone through. */
export interface ProgressEvent {
    /** 'start' once the copy begins (done = 0), 'update' as it goes, 'end' when the job has finished it. */
    phase: 'start' | 'update' | 'end';
    done: number;
    total: number;
}
/**
 * What the user allows of backing files named inside images (a path in an
 * image is data from whoever made the image, not an instruction).
 */
export interface BackingRules {
    /** --backing-dir: backing files must lie in these directories, also after following symlinks (backing.allowedDirs). */
    backingDirs?: string[] | undefined;
    /** --forbid-backing: refuse images that name a backing file (backing.mode 'forbid'). */
    forbidBacking?: boolean | undefined;
    /** A rule of the caller's for each backing file (BackingPolicy.approve; the blk command's owner rule). */
    approve?: BackingPolicy['approve'] | undefined;
    /**
     * --backing-devices: images may name block devices as backing files
     * (BackingPolicy.allowDevices). Default: what the blk command was told, else no.
     */
    backingDevices?: boolean | undefined;
}
/** Just the backing rules of `o` (to hand a job's rules on to the images it opens). */
export declare function rulesIn(o: BackingRules): BackingRules;
/** Options every job takes. */
export interface JobOptions extends BackingRules {
    /**
     * Where the files live. Default: the host file system with OS advisory
     * locks (`hostVfs()` of @blk/images), as the blk command uses.
     */
    vfs?: Vfs;
    /** Called as the copy progresses (the blk command draws its `-p` line from it). */
    onProgress?: (event: ProgressEvent) => void;
    /** I/O unit of the copy loop in bytes: a positive multiple of 512 (default 1 MiB). */
    chunkSize?: number;
    /** Guess every backing file's format from its content (--backing-probe; trusted images only). */
    backingProbe?: boolean;
    /** Cache mode of the written images (convert, commit): see CacheMode. Default writeback. */
    cache?: CacheMode;
}
export interface CliOpenOptions extends BackingRules {
    /** -f: the top image's format (probed when absent). */
    format?: string | undefined;
    /**
     * `format` is only a default nobody named (raw for a backing file, a
     * job's output): a file disguised as raw is refused, and writes that would
     * make it probe as another format are (see OpenImageOptions.formatAssumed).
     */
    formatAssumed?: boolean | undefined;
    readOnly: boolean;
    /** Format for the top image's direct backing file (rebase/compare -F style). */
    backingFormat?: string | undefined;
    /** --backing-probe: guess every backing file's format from its content. */
    backingProbe?: boolean | undefined;
    /** What to do when a backing file's size/mtime differ from the overlay's record. */
    onMismatch?: BackingPolicy['onMismatch'];
    /** Open the backing chain (default), or ignore it. */
    backingMode?: BackingPolicy['mode'];
    /** -U: read an image another process may be writing (force-share=on; read-only opens only). */
    forceShare?: boolean | undefined;
    /** Where the Vfs's warnings go (the blk command prints them as `blk: warning: ...`). */
    onWarning?: ((message: string) => void) | undefined;
}
/** openImage's options for the CLI's options (the Vfs aside). */
export declare function cliOpenOptions(o: CliOpenOptions): Parameters<typeof openImage>[1];
export declare function backingPolicy(o: Omit<CliOpenOptions, 'readOnly' | 'format'>): BackingPolicy;
/** What the backing rules say of the backing file an image names, decided without opening it. */
export interface BackingVerdict {
    /** The path as stored in the image. */
    stored: string;
    /** The absolute path it resolves to (undefined when it cannot be resolved safely). */
    resolved: string | undefined;
    /** Whether the rules let blk open it. */
    allowed: boolean;
    /** Why not, when not allowed. */
    reason?: string;
}
/** Decides whether `image`'s backing file may be opened under `rules`, without opening it. */
export declare function judgeBacking(vfs: Vfs, image: Image, rules: BackingRules): Promise<BackingVerdict | undefined>;
export interface BackingOpenOptions extends BackingRules {
    readOnly: boolean;
    /** --backing-probe: guess the format from the content. */
    backingProbe?: boolean | undefined;
    /** Open the backing file's own chain (default), or ignore it. */
    backingMode?: 'open' | 'ignore';
    /** -U: read it even while another process writes it (read-only opens only). */
    forceShare?: boolean | undefined;
    /** Where the open's warnings go (force-share's), instead of Node's process warnings. */
    onWarning?: ((message: string) => void) | undefined;
}
/**
 * Opens the backing file `top` names, for a job that works on it directly
 * (commit writes into it; check walks the chain a level at a time), under
 * the rules openImage applies inside a chain: the user's backing rules, and
 * a format that is the recorded one, else raw only if the file does not
 * carry another format's header (a cow file under a QEMU cow file must not
 * be written over as raw).
 */
export declare function openBackingOf(vfs: Vfs, top: Image, o: BackingOpenOptions, named?: string): Promise<Image>;
/**
 * Opens a backing file the user named (rebase -b, convert -B) to read it:
 * raw unless a format is given, and then refused if it carries another
 * format's header; its own chain opens under the user's rules.
 */
export declare function openNamedBacking(vfs: Vfs, path: string, format: string | undefined, rules: BackingRules & {
    backingProbe?: boolean | undefined;
}): Promise<Image>;
/** Opens an image on `vfs` as the CLI's options say. */
export declare function openOn(vfs: Vfs, path: string, o: CliOpenOptions): Promise<Image>;
/**
 * Refuses, before anything is written, a copy of `runs` of `source` into
 * `target` that would make `target` probe as another format: the guest data
 * landing in the bytes that decide how a raw file probes (its first and last
 * bytes) must not turn it into, say, an overlay naming a host file. Only
 * images whose writes are guarded (format probed or assumed) are checked; the
 * guard also checks every write as it happens.
 */
export declare function checkCopyKeepsFormat(target: Image, source: Image, runs: ReadonlyArray<{
    start: number;
    length: number;
}>): Promise<void>;
/** checkCopyKeepsFormat for several copies applied in order (commit -b: the lowest layer first, the top last). */
export declare function checkCopiesKeepFormat(target: Image, copies: ReadonlyArray<{
    source: Image;
    runs: ReadonlyArray<{
        start: number;
        length: number;
    }>;
}>): Promise<void>;
/** The job's Vfs: the one given, else the host's (with locks). */
export declare function jobVfs(options: JobOptions): Vfs;
/**
 * The job's Vfs as its cache mode wants it: with `unsafe`, every storage it
 * opens ignores flush() (nothing is ever fsync'ed); otherwise `vfs` itself.
 */
export declare function cacheVfs(vfs: Vfs, options: JobOptions): Vfs;
/**
 * A copy loop's pipeline: up to `depth` tasks in flight, each with a slot of
 * buffers of its own, so that reading one chunk overlaps writing another
 * when the storage's I/O is asynchronous (and costs nothing when it is not).
 * The first failure stops new tasks and is thrown by start() or drain().
 */
export declare class CopyPipeline<S> {
    private readonly free;
    private readonly inflight;
    private failure;
    constructor(depth: number, slot: () => S);
    /** Waits for a free slot, then starts `task` on it without waiting for it to finish. */
    start(task: (slot: S) => Promise<void>): Promise<void>;
    /** Waits for every task; throws the first failure. */
    drain(): Promise<void>;
    /** Waits for every task, ignoring failures (before cleaning up after an error). */
    settle(): Promise<void>;
}
/** The copy loop's I/O unit, checked. */
export declare function jobChunk(options: JobOptions, fallback?: number): number;
/**
 * A backing file named on the command line, as qemu-img resolves it: a
 * relative name is relative to the directory of the image that will refer to
 * it, not to the current directory. An absolute name is kept as given (it is
 * what the image will record). Vfs paths are POSIX-style.
 */
export declare function resolveBackingArg(vfs: Vfs, imagePath: string, backing: string): string;
/** A file's identity (device and inode), following symlinks; undefined when it cannot be stat'ed or the Vfs has none. */
export declare function fileId(vfs: Vfs, path: string): Promise<string | undefined>;
/** The identities of every file of an opened image's chain (top first), with the path each was opened by. */
export declare function chainFiles(vfs: Vfs, image: Image | undefined): Promise<Map<string, string>>;
/**
 * Refuses `target` (a file the job is about to write or replace) when it is
 * one of the files of `chain` (compared by device and inode, so that neither
 * a symlink nor a hard link hides it): writing it would destroy data the job
 * still reads, or make an image its own backing file.
 */
export declare function refuseTargetInChain(vfs: Vfs, target: string, chain: Map<string, string>, what: string): Promise<void>;
/** Whole seconds of a file's mtime (floored), or undefined when it cannot be stat'ed. */
export declare function mtimeOf(vfs: Vfs, path: string): Promise<number | undefined>;
/** Turns the `onProgress` callback into the three calls the copy loops make. */
export declare function progressOf(options: JobOptions, total: number): {
    update(done: number): void;
    end(): void;
};
/**
 * Lets signals, timers and output run during long loops of synchronous I/O
 * (file I/O is synchronous under the Promise API, so a loop of awaits never
 * returns to the event loop by itself). Yields at most every 10 ms.
 */
export declare function yieldToEventLoop(): Promise<void>;
/** True when every byte of `buf` is zero (memcmp against a zero buffer). */
export declare function isZero(buf: Uint8Array): boolean;
/** True when `a` and `b` hold the same bytes (memcmp). */
export declare function sameBytes(a: Uint8Array, b: Uint8Array): boolean;
