import { BlockError } from './errors.js';
import type { BlockDriver, ProbeHint } from './driver.js';
import { checkShortRead, type Storage } from './storage.js';

/** Upper bound on how many bytes probing reads, whatever drivers ask for. */
export const MAX_PROBE_BYTES = 64 * 1024;

export interface ProbeResult {
  driver: BlockDriver;
  score: number;
  /** Every driver's score, in registration order (for `info` and debugging). */
  scores: Array<{ name: string; score: number }>;
}

/**
 * The set of formats an application knows. Probing asks every driver to score
 * the file's first bytes and picks the highest score. Ties go to the driver
 * registered first (as QEMU's bdrv_probe_all keeps the first maximum), so
 * registration order is the documented tie-break.
 */
export class DriverRegistry {
  private readonly drivers: BlockDriver[] = [];

  constructor(drivers: Iterable<BlockDriver> = []) {
    for (const driver of drivers) this.register(driver);
  }

  /** Adds a driver. A second driver with a taken name is refused unless `replace` is set. */
  register(driver: BlockDriver, options: { replace?: boolean } = {}): this {
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
      throw new BlockError('unknown-format',
        `unknown format '${name}' (known: ${this.names().join(', ') || 'none registered'})`, { path });
    }
    return driver;
  }

  names(): string[] {
    return this.drivers.map((d) => d.name);
  }

  list(): readonly BlockDriver[] {
    return this.drivers;
  }

  /** How many leading bytes a probe reads. */
  probeWindow(): number {
    return Math.min(MAX_PROBE_BYTES, Math.max(0, ...this.drivers.map((d) => d.probeBytes)));
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

  /** Reads the probe window of `storage` once and picks a driver. */
  async probe(storage: Storage, fileName?: string): Promise<ProbeResult> {
    const size = await storage.size();
    const head = new Uint8Array(Math.min(size, this.probeWindow()));
    const n = await storage.read(0, head);
    await checkShortRead(storage, 0, n, head.length);
    const result = this.probeHead(head.subarray(0, n), { fileName, size });
    if (!result) {
      throw new BlockError('unknown-format',
        `no registered format recognises this file (tried: ${this.names().join(', ') || 'none'})`,
        { path: storage.path });
    }
    return result;
  }
}
