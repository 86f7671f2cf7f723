import { type RunOptions, type RunResult } from './peers.js';
import { type Write } from './files.js';
type Images = typeof import('@blk/images');
type Image = Awaited<ReturnType<Images['openImage']>>;
/** The @blk/images module (cow + raw registered). */
export declare function blk(): Promise<Images>;
export declare const REPO: string;
export declare const CLI: string;
/**
 * Runs the built `blk` CLI. A missing build is an error (not a skip: the CLI
 * is part of blk, not a peer); a stale one is reported on stderr.
 */
export declare function blkCli(args: string[], options?: RunOptions): Promise<RunResult>;
/** Runs the CLI and throws with its output unless it exits 0. */
export declare function blkCliOk(args: string[], options?: RunOptions): Promise<RunResult>;
export type CowVariant = 'v3' | 'v2-uml' | 'v1' | 'v2-qemu-lp64' | 'v2-qemu-ilp32';
/** Creates a cow overlay of `variant` over the raw file `backing` with blk. */
export declare function createOverlay(path: string, backing: string, variant: CowVariant, backingFormat?: string): Promise<void>;
export interface OpenOpts {
    readOnly?: boolean;
    /** Name the top format (default: probe, as a user would). */
    format?: string;
    /** Backing formats: 'probe' for cow-over-cow chains. */
    backingFormat?: string;
    onMismatch?: 'refuse' | 'accept' | 'update';
}
export declare function openBlk(path: string, o?: OpenOpts): Promise<Image>;
/** Writes through blk's library API and closes (flushes) the image. */
export declare function blkWrite(path: string, writes: Write[], o?: OpenOpts): Promise<void>;
/** The whole guest-visible content, read through blk's chain. */
export declare function blkReadAll(path: string, o?: OpenOpts): Promise<Buffer>;
/** Sectors blk says the top layer itself holds (chain depth 0). */
export declare function blkAllocatedSectors(path: string, o?: OpenOpts): Promise<Set<number>>;
export declare function blkInfo(path: string, o?: OpenOpts): Promise<ReturnType<Image['info']>>;
export {};
