import { assert, type IAsyncProperty, type Parameters } from 'fast-check';
import type { DriverRegistry } from '@blk/core/portable';

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
export function envRuns(): number | undefined {
  const env = (globalThis as { process?: { env?: Record<string, string | undefined> } }).process?.env;
  const raw = env?.BLK_PROPERTY_RUNS;
  if (raw === undefined || raw.trim() === '') return undefined;
  const n = Number(raw);
  if (!Number.isSafeInteger(n) || n < 1) throw new Error(`BLK_PROPERTY_RUNS must be a positive integer, not '${raw}'`);
  return n;
}

export function fcParameters(options: ProofOptions): Parameters<unknown> {
  const params: Parameters<unknown> = { numRuns: envRuns() ?? options.numRuns ?? 200 };
  if (options.seed !== undefined) params.seed = options.seed;
  if (options.path !== undefined) params.path = options.path;
  return { ...params, ...options.fcParameters };
}

/**
 * Runs `fc.assert` and, on failure, rethrows one Error whose message leads
 * with the subject and the violated expectation, followed by fast-check's
 * report (counterexample, seed, replay path); the original is its `cause`.
 */
export async function assertProperty(
  what: string,
  property: IAsyncProperty<unknown>,
  params: Parameters<unknown>,
): Promise<void> {
  try {
    await assert(property, params);
  } catch (err) {
    const cause = err instanceof Error && err.cause instanceof Error ? err.cause : undefined;
    const report = err instanceof Error ? err.message : String(err);
    throw new Error(`${what}: ${cause ? cause.message : 'property failed'}\n\n${report}`, { cause: cause ?? err });
  }
}

/**
 * Where the proofs find formats: a host (`createHost({ drivers })`: its
 * registry) or a registry. Exactly one of the two.
 */
export interface FormatSource {
  /** A host whose drivers include every format named (its files are not used: proofs work in memory). */
  host?: { readonly registry: DriverRegistry } | undefined;
  /** A registry holding every format named. */
  registry?: DriverRegistry | undefined;
}

/** The registry of `source` (see `FormatSource`); throws when it names neither or both. */
export function registryOf(source: FormatSource, proof: string): DriverRegistry {
  if ((source.host === undefined) === (source.registry === undefined)) {
    throw new Error(`${proof}: give either host or registry`);
  }
  return source.host?.registry ?? source.registry!;
}
