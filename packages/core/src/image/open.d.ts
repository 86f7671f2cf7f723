import { Image } from './image.js';
import { type BackingPolicy } from './backing-policy.js';
import type { CacheMode, PreallocationMode } from '../format/driver.js';
import type { DriverRegistry } from '../format/registry.js';
import type { Vfs } from '../storage/storage.js';
export interface OpenImageOptions {
    /** The formats to probe among; `@blk/images` passes one with every built-in format. */
    registry: DriverRegistry;
    /** Name the format instead of probing (nothing is probed, no probe guard is set). */
    format?: string;
    /**
     * `format` is a default nobody chose (a job's "raw unless told", as for
     * backing files), not the user's word: the file is refused when it carries
     * another format's header or signature (`backing-format`), and a writable
     * image of a format whose guest data starts at offset 0 gets the probe
     * guard, as if its format had been probed.
     */
    formatAssumed?: boolean;
    readOnly?: boolean;
    /** Where files live; defaults to the host file system (NodeVfs). */
    vfs?: Vfs;
    cache?: CacheMode;
    /** Options for the top image's driver (e.g. `{ variant: 'v2-qemu-lp64' }`). */
    driverOptions?: Record<string, unknown>;
    backing?: BackingPolicy;
    /**
     * May the image itself be a block device? Default true (the caller named
     * it). Pass false when the path came from an image (a job that opens a
     * backing file directly, such as commit, passes `backing.allowDevices`).
     */
    blockDevices?: boolean;
    /**
     * qemu-img's `-U` (force-share=on): read an image another process may be
     * writing. Every file of the chain opens without a lock that would conflict
     * with a writer's (what is read may then be inconsistent, and the Vfs warns
     * through `onWarning` when it sees a writer). Only with `readOnly`.
     */
    forceShare?: boolean;
    /** Warnings from the Vfs (see `forceShare`); a locking Vfs emits a process warning without it. */
    onWarning?: (message: string) => void;
}
export interface CreateImageOptions {
    registry: DriverRegistry;
    format: string;
    /** Virtual size in bytes; defaults to the backing image's size. */
    size?: number;
    /** Backing file: its path (made absolute) and, optionally, its format (default raw). */
    backing?: string | {
        path: string;
        format?: string;
    };
    driverOptions?: Record<string, unknown>;
    /** How much space to reserve (default `off`: a sparse file); see `PreallocationMode`. */
    preallocation?: PreallocationMode;
    vfs?: Vfs;
    /** Replace an existing file (default: refuse with `exists`). */
    overwrite?: boolean;
}
/** The host file system, loaded on first use so that the portable core never imports node:fs. */
export declare function defaultVfs(): Promise<Vfs>;
/**
 * Opens an image: probes its format (or takes the named one), then opens its
 * backing chain under the backing policy, each backing file read-only.
 */
export declare function openImage(path: string, options: OpenImageOptions): Promise<Image>;
/**
 * Creates an image through its driver. The file must not exist (unless
 * `overwrite`); on failure nothing is left behind.
 */
export declare function createImage(path: string, options: CreateImageOptions): Promise<void>;
