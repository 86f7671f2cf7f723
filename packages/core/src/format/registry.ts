import { BlockError } from '../errors.js';
import type { BlockDriver, ProbeHint, ProbedBytes } from './driver.js';
import { checkShortRead, type Storage } from '../storage/storage.js';
import {
  SIGNATURE_HEAD_BYTES,
  SIGNATURE_TAIL_BYTES,
  findForeignFormat,
  signatureTail,
  type ForeignFormat,
} from './signatures.js';

/** Upper bound on how many bytes probing reads, whatever drivers ask for. */
export const MAX_PROBE_BYTES = 64 * 1024;

export interface ProbeResult {
  driver: BlockDriver;
  score: number;
  /** Every driver's score, in registration order (for `info` and debugging). */
  scores: Array<{ name: string; score: number }>;
}

/**
 * What a file's bytes say it is: a registered driver's, or a format no
 * registered driver reads, known by its signature (see signatures.ts).
 */
export type Recognition =
  | (ProbeResult & { foreign?: undefined })
  | { foreign: ForeignFormat; driver?: undefined; scores: Array<{ name: string; score: number }> };

/**
 * The score a foreign signature counts as: only a registered driver that is
 * certain (100) outranks it (and wins the tie, as registered drivers come
 * first). A registered driver of the same name replaces the signature: its
 * own probe decides.
 */
export const FOREIGN_SIGNATURE_SCORE = 100;

/** The typed error for a file of a format no registered driver reads. */
export function foreignFormatError(found: ForeignFormat, path: string | undefined): BlockError {
  return new BlockError(
    'unsupported-format',
    `a ${found.format} image (${found.description}: ${found.evidence}); no registered driver reads ${found.format}, `
      + 'and it is not guessed to be raw: to read its bytes as a raw disk, name the format (-f raw)',
    { path, format: found.format },
  );
}

/**
 * The set of formats an application knows. Probing asks every driver to score
 * the file's first bytes and picks the highest score. Ties go to the driver
 * registered first (as QEMU's bdrv_probe_all keeps the first maximum), so
 * registration order is the documented tie-break.
 */
export class DriverRegistry {
  private drivers: BlockDriver[] = [];
  private frozen_ = false;

  constructor(drivers: Iterable<BlockDriver> = []) {
    for (const driver of drivers) this.register(driver);
  }

  /**
   * Makes this registry read-only: `register` and `unregister` then throw
   * `invalid-argument`. A host (`createHost`) holds a frozen copy, so that
   * nobody changes the formats it probes among behind its back.
   */
  freeze(): this {
    this.frozen_ = true;
    this.drivers = Object.freeze([...this.drivers]) as BlockDriver[];
    return this;
  }

  /** Whether `freeze()` was called. */
  get frozen(): boolean {
    return this.frozen_;
  }

  private checkMutable(what: string): void {
    if (this.frozen_) {
      throw new BlockError(
        'invalid-argument',
        `cannot ${what}: this driver registry is frozen (a host's); create a host with the drivers you want instead`,
      );
    }
  }

  /** Adds a driver. A second driver with a taken name is refused unless `replace` is set. */
  register(driver: BlockDriver, options: { replace?: boolean } = {}): this {
    this.checkMutable(`register driver '${driver.name}'`);
    const at = this.drivers.findIndex((d) => d.name === driver.name);
    if (at >= 0) {
      if (!options.replace) {
        throw new BlockError('invalid-argument', `a driver named '${driver.name}' is registered already`);
      }
      this.drivers[at] = driver;
    } else {
      this.drivers.push(driver);
    }
    return this;
  }

  unregister(name: string): boolean {
    this.checkMutable(`unregister driver '${name}'`);
    const at = this.drivers.findIndex((d) => d.name === name);
    if (at >= 0) this.drivers.splice(at, 1);
    return at >= 0;
  }

  get(name: string): BlockDriver | undefined {
    return this.drivers.find((d) => d.name === name);
  }

  /** The driver named `name`, or an `unknown-format` error listing the known ones. */
  require(name: string, path?: string): BlockDriver {
    const driver = this.get(name);
    if (!driver) {
      throw new BlockError(
        'unknown-format',
        `unknown format '${name}' (known: ${this.names().join(', ') || 'none registered'})`,
        { path },
      );
    }
    return driver;
  }

  names(): string[] {
    return this.drivers.map((d) => d.name);
  }

  list(): readonly BlockDriver[] {
    return this.drivers;
  }

  /** How many leading bytes a probe reads: what the hungriest driver wants, and the signature checks. */
  probeWindow(): number {
    return Math.min(MAX_PROBE_BYTES, Math.max(SIGNATURE_HEAD_BYTES, ...this.drivers.map((d) => d.probeBytes)));
  }

  /** How many trailing bytes a probe reads (at most; fewer for a shorter file). */
  probeTail(): number {
    return SIGNATURE_TAIL_BYTES;
  }

  /** Scores `head` against every driver; undefined when nothing scores above 0. */
  probeHead(head: Uint8Array, hint: ProbeHint): ProbeResult | undefined {
    let best: { driver: BlockDriver; score: number } | undefined;
    const scores: Array<{ name: string; score: number }> = [];
    for (const driver of this.drivers) {
      let score = 0;
      try {
        score = driver.probe(head.subarray(0, Math.min(head.length, driver.probeBytes)), hint);
      } catch {
        // A probe is meant to be pure and total; one that throws says "not mine".
        score = 0;
      }
      score = Number.isFinite(score) ? Math.max(0, Math.min(100, score)) : 0;
      scores.push({ name: driver.name, score });
      if (score > 0 && (!best || score > best.score)) best = { driver, score };
    }
    return best && { ...best, scores };
  }

  /**
   * Scores the file's first bytes (`head`) and last bytes (`tail`, see
   * `signatureTail`) against every driver and against the signatures of
   * formats that no registered driver reads. The best registered driver
   * wins unless a foreign signature outranks it (FOREIGN_SIGNATURE_SCORE):
   * raw, which claims anything with score 1, never wins over a qcow2 header.
   */
  recognise(head: Uint8Array, tail: Uint8Array | undefined, hint: ProbeHint): Recognition | undefined {
    const end = signatureTail(head, tail, hint.size);
    const best = this.probeHead(head, end.length > 0 ? { ...hint, tail: end } : hint);
    if (best && best.score >= FOREIGN_SIGNATURE_SCORE) return best;
    const foreign = findForeignFormat(head, end, (format) => this.get(format) !== undefined);
    if (foreign) {
      return { foreign, scores: best?.scores ?? this.drivers.map((d) => ({ name: d.name, score: 0 })) };
    }
    return best;
  }

  /**
   * Reads what probing looks at: the probe window of `storage` (once) and its
   * last bytes (once, when the window does not reach them), and its size.
   * `openImage` hands these bytes to the chosen driver's `open`
   * (`DriverOpenOptions.probe`), so that it need not read them again.
   */
  async readProbe(storage: Storage): Promise<ProbedBytes> {
    const size = await storage.size();
    const head = new Uint8Array(Math.min(size, this.probeWindow()));
    const n = await storage.read(0, head);
    await checkShortRead(storage, 0, n, head.length);
    const bytes: ProbedBytes = { head: head.subarray(0, n), size };
    if (size > head.length) {
      const tail = new Uint8Array(Math.min(size, this.probeTail()));
      const at = size - tail.length;
      const got = await storage.read(at, tail);
      await checkShortRead(storage, at, got, tail.length);
      bytes.tail = tail;
    }
    return bytes;
  }

  /** What `bytes` (from `readProbe`) say the file is, without throwing for a foreign format. */
  recogniseBytes(bytes: ProbedBytes, fileName?: string): Recognition | undefined {
    const hint: ProbeHint = { size: bytes.size };
    if (fileName !== undefined) hint.fileName = fileName;
    return this.recognise(bytes.head, bytes.tail, hint);
  }

  /**
   * The driver for a file whose probe bytes are `bytes` (see `probe`): an
   * `unsupported-format` error for a known format no registered driver
   * reads, `unknown-format` when nothing recognises it.
   */
  identify(bytes: ProbedBytes, fileName?: string, path?: string): ProbeResult {
    const result = this.recogniseBytes(bytes, fileName);
    if (result?.foreign) throw foreignFormatError(result.foreign, path);
    if (!result) {
      throw new BlockError(
        'unknown-format',
        `no registered format recognises this file (tried: ${this.names().join(', ') || 'none'})`,
        { path },
      );
    }
    return result;
  }

  /**
   * Reads the probe window of `storage` once (and its last bytes once, when
   * the window does not reach them) and says what the file is, without
   * throwing for a foreign format.
   */
  async inspect(storage: Storage, fileName?: string): Promise<Recognition | undefined> {
    return this.recogniseBytes(await this.readProbe(storage), fileName);
  }

  /**
   * Picks the driver for `storage` (see `inspect`). A file of a known format
   * that no registered driver reads is an `unsupported-format` error naming
   * it, never a raw guess.
   */
  async probe(storage: Storage, fileName?: string): Promise<ProbeResult> {
    return this.identify(await this.readProbe(storage), fileName, storage.path);
  }
}
