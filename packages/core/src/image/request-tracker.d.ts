export declare class RequestTracker {
    private readonly inFlight;
    /** Runs `work` once no conflicting earlier request overlaps [start, end). */
    run<T>(start: number, end: number, write: boolean, work: () => Promise<T>): Promise<T>;
    /** Resolves when every request in flight now has finished. */
    drain(): Promise<void>;
    get size(): number;
}
