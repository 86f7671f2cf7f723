import { MemoryVfs, type DriverRegistry, type Image, type OpenImageOptions, type Vfs } from '@blk/core/portable';
/**
 * What the proofs run against: a recipe for a fresh image (or backing chain)
 * per run, plus the guest-visible content that image starts with.
 *
 * `size` is known before `setup` because fast-check draws offsets and lengths
 * before a run starts.
 */
export interface TestSubject {
    /** Shown in failure messages. */
    readonly name: string;
    /** Virtual size in bytes of the image under test (the top of the chain). */
    readonly size: number;
    /** Builds a fresh image (or chain) for one run, in `context.vfs`. */
    setup(context: SubjectContext): Promise<SubjectInstance>;
}
export interface SubjectContext {
    /** A new, empty in-memory file space for this run. Create every file here. */
    vfs: MemoryVfs;
    /** A per-run 32-bit seed (drawn by fast-check, so a failure replays) for any content the setup invents. */
    seed: number;
}
export interface OpenContext {
    /**
     * The file space to open through: the run's `MemoryVfs`, or a wrapper
     * around it (`ScheduledVfs`) that delays and reorders every storage
     * operation. Always open through this one, or the races are not real.
     */
    vfs: Vfs;
    /** Open read-only (the proofs verify a read-only open at the end of a run). */
    readOnly: boolean;
}
export interface SubjectInstance {
    /** Guest-visible content at start (through the whole chain); its length must equal `size`. */
    initial: Uint8Array;
    /** Opens the image under test. Called again after every close. */
    open(context: OpenContext): Promise<Image>;
    /** Called once at the end of a run, after the image was closed. */
    dispose?(): Promise<void>;
}
/** One layer of a chain built by `chainSubject`. */
export interface ChainLayer {
    /** Registered format name. */
    format: string;
    /** Virtual size; default the size of the layer below. Required for the base layer. */
    size?: number;
    /** `driverOptions` for `createImage` (e.g. `{ variant: 'v2-qemu-lp64' }` for cow). */
    driverOptions?: Record<string, unknown>;
    /**
     * `driverOptions` for `openImage` when this layer is the top of what is
     * opened (the image under test, or this layer while it is filled). The core
     * passes none to backing files.
     */
    openDriverOptions?: Record<string, unknown>;
    /**
     * What this layer holds before the next layer is stacked on it (or, for
     * the top, before the run starts):
     * - `'random'`: every byte written with a random pattern;
     * - `'none'`: nothing written (an overlay then reads through);
     * - a number: that many random extents (random offsets, lengths and bytes).
     * Default: `'random'` for the base, 4 extents for middle layers, `'none'` for the top.
     */
    fill?: 'random' | 'none' | number;
}
export interface ChainSubjectOptions {
    /** Default: the formats from the top down, e.g. `cow>cow>raw`. */
    name?: string;
    /** Registry holding every format named in `layers`. */
    registry: DriverRegistry;
    /** Layers from the base (index 0) up; the last is the image under test. */
    layers: readonly ChainLayer[];
    /**
     * Options for opening the top image. By default each backing layer opens
     * with the format named in `layers` (through a `backing.format` function)
     * and the top with its own format.
     */
    openOptions?: Partial<Omit<OpenImageOptions, 'registry' | 'vfs' | 'readOnly'>>;
    /** Directory the layer files are created in (default `/images`). */
    dir?: string;
    /** Longest random extent written by a numeric `fill` (default 3 * 4096 + 17). */
    maxFillExtent?: number;
}
/**
 * A subject made of a base image and zero or more overlays, each created with
 * `createImage` (so every overlay records the layer below as its backing
 * file), filled as `layers[i].fill` says, and opened top-down with each layer's
 * format. `initial` is computed independently of the code under test: the
 * fill patterns applied in order, each layer's view cut or zero-extended to
 * its size (reads past a shorter backing file read zeros).
 *
 * A one-layer chain is a single image: `chainSubject({ registry, layers: [{ format: 'raw', size: 65536 }] })`.
 */
export declare function chainSubject(options: ChainSubjectOptions): TestSubject;
