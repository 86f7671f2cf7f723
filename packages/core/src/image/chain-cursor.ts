/**
 * Chain status for a walk that moves forward through an image (map, convert,
 * compare, commit): each layer's last answer is kept and reused while the
 * walk is inside it, so a layer is asked about a run once, not once per run
 * found below it.
 *
 * Without that, an empty overlay over a base with N extents costs N scans of
 * the overlay's allocation data from the current offset to the end: each
 * base extent ends the step and the next step asks the overlay again from
 * scratch (quadratic; minutes for a 1 TiB overlay over 1000 extents).
 *
 * An answer is reused only while its layer saw no write or discard since it
 * was asked (`Image.changeCount`), so a walk over an image that is being
 * written never reports a stale status.
 */
import type { BlockStatus } from '../format/driver.js';
import type { ChainStatus, Image } from './image.js';

interface Known {
  start: number;
  end: number;
  status: BlockStatus;
  changeCount: number;
}

export class ChainCursor {
  /** Per depth, the run that layer last reported. */
  private readonly known: Array<Known | undefined> = [];

  constructor(private readonly top: Image) {}

  /** Status across the whole chain for the run starting at `offset` (as `Image.chainStatus`). */
  async at(offset: number, length: number): Promise<ChainStatus> {
    let image = this.top;
    let ask = length;
    for (let depth = 0; ; depth++) {
      const st = await this.layerStatus(depth, image, offset, ask);
      if (st.allocated) {
        const result: ChainStatus = { length: st.length, depth, zero: st.zero ?? false, path: image.path };
        if (st.hostOffset !== undefined) result.hostOffset = st.hostOffset;
        return result;
      }
      const below = image.backing;
      if (!below || offset >= below.size) return { length: st.length, depth: undefined, zero: true };
      ask = Math.min(st.length, below.size - offset);
      image = below;
    }
  }

  /** One layer's status at `offset`, from its last answer when that still covers `offset`. */
  private async layerStatus(depth: number, image: Image, offset: number, length: number): Promise<BlockStatus> {
    const k = this.known[depth];
    if (k !== undefined && offset >= k.start && offset < k.end && k.changeCount === image.changeCount) {
      const st: BlockStatus = { allocated: k.status.allocated, length: Math.min(k.end - offset, length) };
      if (k.status.zero !== undefined) st.zero = k.status.zero;
      // A status's host offset covers its whole run contiguously (BlockStatus.hostOffset).
      if (k.status.hostOffset !== undefined) st.hostOffset = k.status.hostOffset + (offset - k.start);
      return st;
    }
    const changeCount = image.changeCount;
    const st = await image.status(offset, length);
    this.known[depth] = { start: offset, end: offset + st.length, status: st, changeCount };
    return st;
  }
}
