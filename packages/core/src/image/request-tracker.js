function doneOf(entry) {
    entry.done ??= new Promise((resolve) => { entry.release = resolve; });
    return entry.done;
}
export class RequestTracker {
    inFlight = new Set();
    /** Runs `work` once no conflicting earlier request overlaps [start, end). */
    async run(start, end, write, work) {
        let blockers;
        for (const other of this.inFlight) {
            if ((write || other.write) && other.start < end && start < other.end)
                (blockers ??= []).push(doneOf(other));
        }
        const entry = { start, end, write };
        this.inFlight.add(entry);
        try {
            if (blockers !== undefined)
                await Promise.all(blockers);
            return await work();
        }
        finally {
            this.inFlight.delete(entry);
            entry.release?.();
        }
    }
    /** Resolves when every request in flight now has finished. */
    async drain() {
        await Promise.all([...this.inFlight].map(doneOf));
    }
    get size() {
        return this.inFlight.size;
    }
}
