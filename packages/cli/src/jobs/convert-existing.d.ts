import { type ConvertOptions, type ConvertResult } from './convert.js';
export declare function convertIntoExisting(src: string, dst: string, options: ConvertOptions): Promise<ConvertResult>;
