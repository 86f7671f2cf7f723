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
 * Every layer is asked about the whole rest of the walk's range (not only
 * the part the layer above leaves to it), and keeps the whole run its driver
 * reported, also where that is longer than asked (`Image.status` with `whole`). So a
 * layer is asked again only once the walk has left its last run: the driver
 * calls of a walk are at most the runs each layer has in the range (plus one
 * per layer), linear in runs and never runs x depth.
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
  /** Per depth, the run that layer last reported (whole, as the driver gave it). */
  private readonly known: Array<Known | undefined> = [];

  /**
   * End of the range the walk covers (`Image.map` passes its end): each layer
   * is asked up to there, so its answer covers as much as it can. Without it,
   * each query asks only for its own length (a one-off `chainStatus`, or a
   * walk in pieces whose end is not known).
   */
  private readonly horizon: number | undefined;

  /** How the top layer's status is asked (default `top.status(..., { whole: true })`). */
  private readonly topStatus: ((offset: number, length: number) => Promise<BlockStatus>) | undefined;

  constructor(
    private readonly top: Image,
    options: { end?: number; topStatus?: (offset: number, length: number) => Promise<BlockStatus> } = {},
  ) {
    this.horizon = options.end;
    this.topStatus = options.topStatus;
  }

  /**
   * Status across the whole chain for the run starting at `offset` (as
   * `Image.chainStatus`): at most `length` bytes, cut where any layer's run
   * ends above the layer that holds it.
   */
  async at(offset: number, length: number): Promise<ChainStatus> {
    let image = this.top;
    let end = offset + length;
    for (let depth = 0; ; depth++) {
      const k = this.knownAt(depth, image, offset) ?? (await this.ask(depth, image, offset, end - offset));
      end = Math.min(end, k.end);
      const below = k.status.allocated ? undefined : image.backing;
      if (k.status.allocated || !below || offset >= below.size) return statusOf(k, depth, image, offset, end);
      end = Math.min(end, below.size);
      image = below;
    }
  }

  /**
   * `at` answered from the runs the layers already reported, without a promise; undefined when
   * some layer must be asked (then call `at`). A walk through a chain whose layers' runs are
   * known takes no turn of the microtask queue per run.
   */
  peek(offset: number, length: number): ChainStatus | undefined {
    let image = this.top;
    let end = offset + length;
    for (let depth = 0; ; depth++) {
      const k = this.knownAt(depth, image, offset);
      if (k === undefined) return undefined;
      end = Math.min(end, k.end);
      const below = k.status.allocated ? undefined : image.backing;
      if (k.status.allocated || !below || offset >= below.size) return statusOf(k, depth, image, offset, end);
      end = Math.min(end, below.size);
      image = below;
    }
  }

  /** The last run the layer at `depth` reported, when it still covers `offset` and the layer did not change since. */
  private knownAt(depth: number, image: Image, offset: number): Known | undefined {
    const k = this.known[depth];
    return k !== undefined && offset >= k.start && offset < k.end && k.changeCount === image.changeCount
      ? k
      : undefined;
  }

  /** Asks the layer at `depth` for its run at `offset` (and as far on as the walk goes), and keeps it. */
  private async ask(depth: number, image: Image, offset: number, length: number): Promise<Known> {
    const changeCount = image.changeCount;
    // The rest of the walk's range in this layer, so that the answer covers as much as it can.
    const rest = this.horizon === undefined ? length : Math.max(length, Math.min(this.horizon, image.size) - offset);
    const status =
      depth === 0 && this.topStatus !== undefined
        ? await this.topStatus(offset, rest)
        : await image.status(offset, rest, { whole: true });
    const known: Known = { start: offset, end: offset + status.length, status, changeCount };
    this.known[depth] = known;
    return known;
  }
}

/** The chain status of [offset, end) from the run `k` of the layer at `depth` (`image`), the last layer looked at. */
function statusOf(k: Known, depth: number, image: Image, offset: number, end: number): ChainStatus {
  const st = k.status;
  if (st.allocated) {
    const zero = st.zero ?? false;
    const result: ChainStatus = {
      length: end - offset,
      depth,
      allocated: true,
      data: st.data ?? !zero,
      zero,
      path: image.path,
    };
    // A status's host offset covers its whole run contiguously (BlockStatus.hostOffset).
    if (st.hostOffset !== undefined) result.hostOffset = st.hostOffset + (offset - k.start);
    return result;
  }
  const none: ChainStatus = { length: end - offset, depth: undefined, allocated: false, data: false, zero: true };
  // The bottom layer's host offset for a run it does not hold (a qcow2 subcluster in an allocated
  // cluster): QEMU keeps OFFSET_VALID there, and qemu-img map prints it.
  if (!image.backing && st.hostOffset !== undefined) {
    none.hostOffset = st.hostOffset + (offset - k.start);
    none.path = image.path;
  }
  return none;
}
