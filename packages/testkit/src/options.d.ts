import { type IAsyncProperty, type Parameters } from 'fast-check';
/** Options shared by every proof. */
export interface ProofOptions {
    /**
     * Number of random command sequences (default 200). The environment
     * variable `BLK_PROPERTY_RUNS`, when set, overrides this and the default,
     * so CI can run longer without code changes.
     */
    numRuns?: number;
    /** fast-check seed, to replay a failure (fast-check prints it). */
    seed?: number;
    /** fast-check replay path, printed with the seed on failure. */
    path?: string;
    /** The command sequence's `replayPath`, printed in the counterexample as a comment (`checkReadAfterWrite`). */
    replayPath?: string;
    /** Longest command sequence per run (default 50 sequential, 24 concurrent). */
    maxOps?: number;
    /** Longest read or write in bytes (default min(size, 64 KiB)). */
    maxLength?: number;
    /**
     * Boundaries that offsets and lengths cluster around (±3 bytes), besides
     * uniformly random ones. Default [512, 4096, 65536]: sector, page and
     * cluster edges, where read-modify-write and run splitting go wrong.
     */
    alignments?: number[];
    /**
     * Check that every byte written during a run reports as held by the top
     * layer (`chainStatus(...).depth === 0`). Default true; turn it off for a
     * driver that may legitimately drop allocation (for example one that
     * deallocates runs written with zeros over a zero backing).
     */
    writesAllocate?: boolean;
    /** Further fast-check parameters (verbose, timeout, examples, ...); these win over the above. */
    fcParameters?: Parameters<unknown>;
}
/** The environment's `BLK_PROPERTY_RUNS`, read without assuming Node. */
export declare function envRuns(): number | undefined;
export declare function fcParameters(options: ProofOptions): Parameters<unknown>;
/**
 * Runs `fc.assert` and, on failure, rethrows one Error whose message leads
 * with the subject and the violated expectation, followed by fast-check's
 * report (counterexample, seed, replay path); the original is its `cause`.
 */
export declare function assertProperty(what: string, property: IAsyncProperty<unknown>, params: Parameters<unknown>): Promise<void>;
