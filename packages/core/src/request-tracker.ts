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
  done: Promise<void>;
}

export class RequestTracker {
  private readonly inFlight = new Set<Tracked>();

  /** Runs `work` once no conflicting earlier request overlaps [start, end). */
  async run<T>(start: number, end: number, write: boolean, work: () => Promise<T>): Promise<T> {
    const blockers: Promise<void>[] = [];
    for (const other of this.inFlight) {
      if ((write || other.write) && other.start < end && start < other.end) blockers.push(other.done);
    }
    let release!: () => void;
    const entry: Tracked = { start, end, write, done: new Promise<void>((resolve) => { release = resolve; }) };
    this.inFlight.add(entry);
    try {
      if (blockers.length > 0) await Promise.all(blockers);
      return await work();
    } finally {
      this.inFlight.delete(entry);
      release();
    }
  }

  /** Resolves when every request in flight now has finished. */
  async drain(): Promise<void> {
    await Promise.all([...this.inFlight].map((entry) => entry.done));
  }

  get size(): number {
    return this.inFlight.size;
  }
}
