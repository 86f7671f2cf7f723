import { BlockError } from '../errors.js';
import type { BlockDriver, ProbeHint } from './driver.js';
import { type Storage } from '../storage/storage.js';
import { type ForeignFormat } from './signatures.js';
/** Upper bound on how many bytes probing reads, whatever drivers ask for. */
export declare const MAX_PROBE_BYTES: number;
export interface ProbeResult {
    driver: BlockDriver;
    score: number;
    /** Every driver's score, in registration order (for `info` and debugging). */
    scores: Array<{
        name: string;
        score: number;
    }>;
}
/**
 * What a file's bytes say it is: a registered driver's, or a format no
 * registered driver reads, known by its signature (see signatures.ts).
 */
export type Recognition = (ProbeResult & {
    foreign?: undefined;
}) | {
    foreign: ForeignFormat;
    driver?: undefined;
    scores: Array<{
        name: string;
        score: number;
    }>;
};
/**
 * The score a foreign signature counts as: only a registered driver that is
 * certain (100) outranks it (and wins the tie, as registered drivers come
 * first). A registered driver of the same name replaces the signature: its
 * own probe decides.
 */
export declare const FOREIGN_SIGNATURE_SCORE = 100;
/** The typed error for a file of a format no registered driver reads. */
export declare function foreignFormatError(found: ForeignFormat, path: string | undefined): BlockError;
/**
 * The set of formats an application knows. Probing asks every driver to score
 * the file's first bytes and picks the highest score. Ties go to the driver
 * registered first (as QEMU's bdrv_probe_all keeps the first maximum), so
 * registration order is the documented tie-break.
 */
export declare class DriverRegistry {
    private readonly drivers;
    constructor(drivers?: Iterable<BlockDriver>);
    /** Adds a driver. A second driver with a taken name is refused unless `replace` is set. */
    register(driver: BlockDriver, options?: {
        replace?: boolean;
    }): this;
    unregister(name: string): boolean;
    get(name: string): BlockDriver | undefined;
    /** The driver named `name`, or an `unknown-format` error listing the known ones. */
    require(name: string, path?: string): BlockDriver;
    names(): string[];
    list(): readonly BlockDriver[];
    /** How many leading bytes a probe reads: what the hungriest driver wants, and the signature checks. */
    probeWindow(): number;
    /** How many trailing bytes a probe reads (at most; fewer for a shorter file). */
    probeTail(): number;
    /** Scores `head` against every driver; undefined when nothing scores above 0. */
    probeHead(head: Uint8Array, hint: ProbeHint): ProbeResult | undefined;
    /**
     * Scores the file's first bytes (`head`) and last bytes (`tail`, see
     * `signatureTail`) against every driver and against the signatures of
     * formats that no registered driver reads. The best registered driver
     * wins unless a foreign signature outranks it (FOREIGN_SIGNATURE_SCORE):
     * raw, which claims anything with score 1, never wins over a qcow2 header.
     */
    recognise(head: Uint8Array, tail: Uint8Array | undefined, hint: ProbeHint): Recognition | undefined;
    /**
     * Reads the probe window of `storage` once (and its last bytes once, when
     * the window does not reach them) and says what the file is, without
     * throwing for a foreign format.
     */
    inspect(storage: Storage, fileName?: string): Promise<Recognition | undefined>;
    /**
     * Picks the driver for `storage` (see `inspect`). A file of a known format
     * that no registered driver reads is an `unsupported-format` error naming
     * it, never a raw guess.
     */
    probe(storage: Storage, fileName?: string): Promise<ProbeResult>;
}
