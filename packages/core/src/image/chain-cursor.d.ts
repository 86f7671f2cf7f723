import type { ChainStatus, Image } from './image.js';
export declare class ChainCursor {
    private readonly top;
    /** Per depth, the run that layer last reported. */
    private readonly known;
    constructor(top: Image);
    /** Status across the whole chain for the run starting at `offset` (as `Image.chainStatus`). */
    at(offset: number, length: number): Promise<ChainStatus>;
    /** One layer's status at `offset`, from its last answer when that still covers `offset`. */
    private layerStatus;
}
