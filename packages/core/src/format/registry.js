import { BlockError } from '../errors.js';
import { checkShortRead } from '../storage/storage.js';
import { SIGNATURE_HEAD_BYTES, SIGNATURE_TAIL_BYTES, findForeignFormat, signatureTail, } from './signatures.js';
/** Upper bound on how many bytes probing reads, whatever drivers ask for. */
export const MAX_PROBE_BYTES = 64 * 1024;
/**
 * The score a foreign signature counts as: only a registered driver that is
 * certain (100) outranks it (and wins the tie, as registered drivers come
 * first). A registered driver of the same name replaces the signature: its
 * own probe decides.
 */
export const FOREIGN_SIGNATURE_SCORE = 100;
/** The typed error for a file of a format no registered driver reads. */
export function foreignFormatError(found, path) {
    return new BlockError('unsupported-format', `a ${found.format} image (${found.description}: ${found.evidence}); no registered driver reads ${found.format}, `
        + 'and it is not guessed to be raw: to read its bytes as a raw disk, name the format (-f raw)', { path, format: found.format });
}
/**
 * The set of formats an application knows. Probing asks every driver to score
 * the file's first bytes and picks the highest score. Ties go to the driver
 * registered first (as QEMU's bdrv_probe_all keeps the first maximum), so
 * registration order is the documented tie-break.
 */
export class DriverRegistry {
    drivers = [];
    constructor(drivers = []) {
        for (const driver of drivers)
            this.register(driver);
    }
    /** Adds a driver. A second driver with a taken name is refused unless `replace` is set. */
    register(driver, options = {}) {
        const at = this.drivers.findIndex((d) => d.name === driver.name);
        if (at >= 0) {
            if (!options.replace) {
                throw new BlockError('invalid-argument', `a driver named '${driver.name}' is registered already`);
            }
            this.drivers[at] = driver;
        }
        else {
            this.drivers.push(driver);
        }
        return this;
    }
    unregister(name) {
        const at = this.drivers.findIndex((d) => d.name === name);
        if (at >= 0)
            this.drivers.splice(at, 1);
        return at >= 0;
    }
    get(name) {
        return this.drivers.find((d) => d.name === name);
    }
    /** The driver named `name`, or an `unknown-format` error listing the known ones. */
    require(name, path) {
        const driver = this.get(name);
        if (!driver) {
            throw new BlockError('unknown-format', `unknown format '${name}' (known: ${this.names().join(', ') || 'none registered'})`, { path });
        }
        return driver;
    }
    names() {
        return this.drivers.map((d) => d.name);
    }
    list() {
        return this.drivers;
    }
    /** How many leading bytes a probe reads: what the hungriest driver wants, and the signature checks. */
    probeWindow() {
        return Math.min(MAX_PROBE_BYTES, Math.max(SIGNATURE_HEAD_BYTES, ...this.drivers.map((d) => d.probeBytes)));
    }
    /** How many trailing bytes a probe reads (at most; fewer for a shorter file). */
    probeTail() {
        return SIGNATURE_TAIL_BYTES;
    }
    /** Scores `head` against every driver; undefined when nothing scores above 0. */
    probeHead(head, hint) {
        let best;
        const scores = [];
        for (const driver of this.drivers) {
            let score = 0;
            try {
                score = driver.probe(head.subarray(0, Math.min(head.length, driver.probeBytes)), hint);
            }
            catch {
                // A probe is meant to be pure and total; one that throws says "not mine".
                score = 0;
            }
            score = Number.isFinite(score) ? Math.max(0, Math.min(100, score)) : 0;
            scores.push({ name: driver.name, score });
            if (score > 0 && (!best || score > best.score))
                best = { driver, score };
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
    recognise(head, tail, hint) {
        const end = signatureTail(head, tail, hint.size);
        const best = this.probeHead(head, end.length > 0 ? { ...hint, tail: end } : hint);
        if (best && best.score >= FOREIGN_SIGNATURE_SCORE)
            return best;
        const foreign = findForeignFormat(head, end, (format) => this.get(format) !== undefined);
        if (foreign) {
            return { foreign, scores: best?.scores ?? this.drivers.map((d) => ({ name: d.name, score: 0 })) };
        }
        return best;
    }
    /**
     * Reads the probe window of `storage` once (and its last bytes once, when
     * the window does not reach them) and says what the file is, without
     * throwing for a foreign format.
     */
    async inspect(storage, fileName) {
        const size = await storage.size();
        const head = new Uint8Array(Math.min(size, this.probeWindow()));
        const n = await storage.read(0, head);
        await checkShortRead(storage, 0, n, head.length);
        let tail;
        if (size > head.length) {
            tail = new Uint8Array(Math.min(size, this.probeTail()));
            const at = size - tail.length;
            const got = await storage.read(at, tail);
            await checkShortRead(storage, at, got, tail.length);
        }
        const hint = { size };
        if (fileName !== undefined)
            hint.fileName = fileName;
        return this.recognise(head.subarray(0, n), tail, hint);
    }
    /**
     * Picks the driver for `storage` (see `inspect`). A file of a known format
     * that no registered driver reads is an `unsupported-format` error naming
     * it, never a raw guess.
     */
    async probe(storage, fileName) {
        const result = await this.inspect(storage, fileName);
        if (result?.foreign)
            throw foreignFormatError(result.foreign, storage.path);
        if (!result) {
            throw new BlockError('unknown-format', `no registered format recognises this file (tried: ${this.names().join(', ') || 'none'})`, { path: storage.path });
        }
        return result;
    }
}
