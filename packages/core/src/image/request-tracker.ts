/**
 * Serialises overlapping requests, as QEMU's tracked requests do: a request
 * waits for every earlier in-flight request whose byte range overlaps its own
 * and that conflicts with it (anything overlaps a write; reads do not block
 * reads). Requests that do not overlap run in parallel. Because each request
 * is registered before it waits, overlapping requests complete in the order
 * they were issued, so results equal that serial order.
 *
 * Finding the overlapping requests must not cost a scan of everything in
 * flight: `blk io` with thousands of aio requests (or a guest with a deep
 * queue) would pay that scan per request, quadratic in the queue depth. Each
 * request of at most `MAX_BUCKETS` buckets of `BUCKET_BYTES` is filed under
 * every bucket it touches; wider ones (a 1 GiB copy chunk, an exclusive
 * operation over the whole image) go on a short list every request looks at.
 */
interface Tracked {
  start: number;
  end: number;
  write: boolean;
  /**
   * Resolves when the request is over. Made only when someone waits for it:
   * most requests conflict with nothing, and a promise per request is a
   * measurable part of the cost of a 4 KiB read with many in flight.
   */
  done?: Promise<void>;
  release?: () => void;
  /** First and last bucket it is filed under; -1 for a wide request (on the `wide` list). */
  firstBucket: number;
  lastBucket: number;
  /** The lookup that last found it (a request in several buckets counts once). */
  seen: number;
}

/** Bucket granularity (64 KiB: a 4 KiB request touches one, a 1 MiB one sixteen). */
const BUCKET_BYTES = 65536;
/** Requests over more buckets than this go on the wide list instead. */
const MAX_BUCKETS = 16;

function doneOf(entry: Tracked): Promise<void> {
  entry.done ??= new Promise<void>((resolve) => {
    entry.release = resolve;
  });
  return entry.done;
}

export class RequestTracker {
  private readonly inFlight = new Set<Tracked>();
  /** Writes among `inFlight`: a read that overlaps none of them can go ahead untracked (reads never block reads). */
  private writesInFlight = 0;
  /** Narrow requests by bucket. */
  private readonly buckets = new Map<number, Set<Tracked>>();
  /** Requests over more than MAX_BUCKETS buckets. */
  private readonly wide = new Set<Tracked>();
  private lookups = 0;

  /**
   * Runs `work` once no conflicting earlier request overlaps [start, end). Not an async function:
   * a request that waits for nothing starts `work` at once and costs one promise, not a suspended
   * frame (thousands of small requests in flight are mostly this case).
   */
  run<T>(start: number, end: number, write: boolean, work: () => T | Promise<T>): Promise<T> {
    const blockers = this.conflicts(start, end, write);
    const entry = this.enter(start, end, write);
    if (blockers !== undefined) return this.runAfter(blockers, entry, work);
    let result: T | Promise<T>;
    try {
      result = work();
    } catch (err) {
      this.leave(entry);
      return Promise.reject(err);
    }
    return Promise.resolve(result).then(
      (value) => {
        this.leave(entry);
        return value;
      },
      (err: unknown) => {
        this.leave(entry);
        throw err;
      },
    );
  }

  /** `run` of a request that waits for `blockers` first. */
  private async runAfter<T>(blockers: Promise<void>[], entry: Tracked, work: () => T | Promise<T>): Promise<T> {
    try {
      await Promise.all(blockers);
      return await work();
    } finally {
      this.leave(entry);
    }
  }

  /** What an earlier request in flight that conflicts with [start, end) resolves when done. */
  private conflicts(start: number, end: number, write: boolean): Promise<void>[] | undefined {
    if (this.inFlight.size === 0) return undefined;
    let blockers: Promise<void>[] | undefined;
    const first = Math.floor(start / BUCKET_BYTES);
    const last = Math.floor((Math.max(end, start + 1) - 1) / BUCKET_BYTES);
    if (last - first >= MAX_BUCKETS || this.inFlight.size <= last - first + 1 + this.wide.size) {
      for (const other of this.inFlight) {
        if ((write || other.write) && other.start < end && start < other.end) (blockers ??= []).push(doneOf(other));
      }
      return blockers;
    }
    const stamp = ++this.lookups;
    for (const other of this.wide) {
      if ((write || other.write) && other.start < end && start < other.end) (blockers ??= []).push(doneOf(other));
    }
    for (let b = first; b <= last; b++) {
      const bucket = this.buckets.get(b);
      if (bucket === undefined) continue;
      for (const other of bucket) {
        if (other.seen === stamp) continue;
        other.seen = stamp;
        if ((write || other.write) && other.start < end && start < other.end) (blockers ??= []).push(doneOf(other));
      }
    }
    return blockers;
  }

  private enter(start: number, end: number, write: boolean): Tracked {
    const first = Math.floor(start / BUCKET_BYTES);
    const last = Math.floor((Math.max(end, start + 1) - 1) / BUCKET_BYTES);
    const narrow = last - first < MAX_BUCKETS;
    const entry: Tracked = {
      start,
      end,
      write,
      firstBucket: narrow ? first : -1,
      lastBucket: narrow ? last : -1,
      seen: 0,
    };
    this.inFlight.add(entry);
    if (write) this.writesInFlight++;
    if (!narrow) {
      this.wide.add(entry);
      return entry;
    }
    for (let b = first; b <= last; b++) {
      let bucket = this.buckets.get(b);
      if (bucket === undefined) this.buckets.set(b, (bucket = new Set()));
      bucket.add(entry);
    }
    return entry;
  }

  private leave(entry: Tracked): void {
    this.inFlight.delete(entry);
    if (entry.write) this.writesInFlight--;
    if (entry.firstBucket < 0) {
      this.wide.delete(entry);
    } else {
      for (let b = entry.firstBucket; b <= entry.lastBucket; b++) {
        const bucket = this.buckets.get(b)!;
        bucket.delete(entry);
        if (bucket.size === 0) this.buckets.delete(b);
      }
    }
    entry.release?.();
  }

  /**
   * Enters a request that is already under way until `pending` settles: one
   * started synchronously while nothing conflicting was in flight (the
   * caller checked, and nothing ran in between), that turned out to need to
   * wait. Later requests that conflict with it wait for it as for any other.
   */
  track<T>(start: number, end: number, write: boolean, pending: Promise<T>): Promise<T> {
    const entry = this.enter(start, end, write);
    const settle = () => this.leave(entry);
    return pending.then(
      (value) => {
        settle();
        return value;
      },
      (err: unknown) => {
        settle();
        throw err;
      },
    );
  }

  /** Resolves when every request in flight now has finished. */
  async drain(): Promise<void> {
    await Promise.all([...this.inFlight].map(doneOf));
  }

  get size(): number {
    return this.inFlight.size;
  }

  /** Writes in flight (a read issued now conflicts with nothing when this is 0). */
  get writes(): number {
    return this.writesInFlight;
  }
}
