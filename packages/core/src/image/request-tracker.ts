/**
 * Serialises overlapping requests, as QEMU's tracked requests do: a request
 * waits for every earlier in-flight request whose byte range overlaps its own
 * and that conflicts with it (anything overlaps a write; reads do not block
 * reads). Requests that do not overlap run in parallel. Because each request
 * is registered before it waits, overlapping requests complete in the order
 * they were issued, so results equal that serial order.
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
}

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

  /** Runs `work` once no conflicting earlier request overlaps [start, end). */
  async run<T>(start: number, end: number, write: boolean, work: () => T | Promise<T>): Promise<T> {
    let blockers: Promise<void>[] | undefined;
    for (const other of this.inFlight) {
      if ((write || other.write) && other.start < end && start < other.end) (blockers ??= []).push(doneOf(other));
    }
    const entry: Tracked = { start, end, write };
    this.add(entry);
    try {
      if (blockers !== undefined) await Promise.all(blockers);
      return await work();
    } finally {
      this.remove(entry);
    }
  }

  /**
   * Enters a request that is already under way until `pending` settles: one
   * started synchronously while nothing conflicting was in flight (the
   * caller checked, and nothing ran in between), that turned out to need to
   * wait. Later requests that conflict with it wait for it as for any other.
   */
  track<T>(start: number, end: number, write: boolean, pending: Promise<T>): Promise<T> {
    const entry: Tracked = { start, end, write };
    this.add(entry);
    const settle = () => this.remove(entry);
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

  private add(entry: Tracked): void {
    this.inFlight.add(entry);
    if (entry.write) this.writesInFlight++;
  }

  private remove(entry: Tracked): void {
    this.inFlight.delete(entry);
    if (entry.write) this.writesInFlight--;
    entry.release?.();
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
