export class ChainCursor {
    top;
    /** Per depth, the run that layer last reported. */
    known = [];
    constructor(top) {
        this.top = top;
    }
    /** Status across the whole chain for the run starting at `offset` (as `Image.chainStatus`). */
    async at(offset, length) {
        let image = this.top;
        let ask = length;
        for (let depth = 0;; depth++) {
            const st = await this.layerStatus(depth, image, offset, ask);
            if (st.allocated) {
                const result = { length: st.length, depth, zero: st.zero ?? false, path: image.path };
                if (st.hostOffset !== undefined)
                    result.hostOffset = st.hostOffset;
                return result;
            }
            const below = image.backing;
            if (!below || offset >= below.size)
                return { length: st.length, depth: undefined, zero: true };
            ask = Math.min(st.length, below.size - offset);
            image = below;
        }
    }
    /** One layer's status at `offset`, from its last answer when that still covers `offset`. */
    async layerStatus(depth, image, offset, length) {
        const k = this.known[depth];
        if (k !== undefined && offset >= k.start && offset < k.end && k.changeCount === image.changeCount) {
            const st = { allocated: k.status.allocated, length: Math.min(k.end - offset, length) };
            if (k.status.zero !== undefined)
                st.zero = k.status.zero;
            // A status's host offset covers its whole run contiguously (BlockStatus.hostOffset).
            if (k.status.hostOffset !== undefined)
                st.hostOffset = k.status.hostOffset + (offset - k.start);
            return st;
        }
        const changeCount = image.changeCount;
        const st = await image.status(offset, length);
        this.known[depth] = { start: offset, end: offset + st.length, status: st, changeCount };
        return st;
    }
}
