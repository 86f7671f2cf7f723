/**
 * blk measure: qemu-img measure. The numbers come from the output format's
 * driver (`BlockDriver.measure`); this module opens the source, if any, and
 * counts its data for the driver at the driver's granularity.
 */
import { type Image } from '@blk/core';
import { type BackingRuleFlags } from '../common.js';
export interface MeasureOpts extends BackingRuleFlags {
    format?: string;
    outputFormat: string;
    options: string[];
    size?: string;
    output: 'human' | 'json';
    backingProbe?: boolean;
    /** -F: the backing file's format (cow records none). */
    backingFormat?: string;
    /** -U: read FILE even while another process writes it. */
    forceShare?: boolean;
}
/**
 * Bytes of `image` (across its backing chain) that hold data a copy would
 * write: every run that is not known to read as zeros, widened to whole
 * `granularity` blocks, each block counted once.
 */
export declare function dataBytes(image: Image, granularity: number): Promise<number>;
export declare function measure(file: string | undefined, opts: MeasureOpts): Promise<number>;
