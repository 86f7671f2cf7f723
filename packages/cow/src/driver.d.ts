/** The `cow` BlockDriver: probe, open, create. */
import { type BlockDriver } from '@blk/core';
export declare const cowDriver: BlockDriver;
