/** blk map: qemu-img map. */
import type { Image } from '@blk/core';
import { type BackingRuleFlags } from '../common.js';
export interface MapOpts extends BackingRuleFlags {
    format?: string;
    output: 'human' | 'json';
    startOffset?: string;
    maxLength?: string;
    backingProbe?: boolean;
    /** -F: the backing file's format (cow records none). */
    backingFormat?: string;
    /** -U: read the image even while another process writes it. */
    forceShare?: boolean;
}
/** One run as qemu-img map describes it. */
export interface MapEntry {
    start: number;
    length: number;
    depth: number;
    present: boolean;
    zero: boolean;
    data: boolean;
    offset?: number;
    filename?: string;
}
/** Walks [start, start+length) of `image` as qemu-img map's merged entries. */
export declare function mapEntries(image: Image, start?: number, length?: number): AsyncGenerator<MapEntry>;
export declare function jsonEntry(e: MapEntry): string;
export declare function map(file: string, opts: MapOpts): Promise<number>;
