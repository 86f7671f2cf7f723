import { debugEnabled, describeError } from '../errors.js';
import { printable } from '../printable.js';
import { parseSizeResult } from '../size.js';
import { MAX_REQUEST } from './command.js';
import { strerror } from './errno.js';
import { openIoFile } from './open-options.js';
import { cvtnumError, dumpBuffer, elapsed } from './report.js';
import { dumpInPieces, rangeError } from './bounded.js';
export class IoSession {
    io;
    backingProbe;
    rules;
    inflight = new Set();
    file;
    quit = false;
    /**
     * `backingProbe`: --backing-probe of the command line, and `rules` its backing rules
     * (--backing-dir, --forbid-backing, the default rule), for every file this session opens.
     */
    constructor(io, backingProbe = false, rules) {
        this.io = io;
        this.backingProbe = backingProbe;
        this.rules = rules;
    }
    get isOpen() {
        return this.file !== undefined;
    }
    /** The open image (commands run only while one is open, unless they are `noFile`). */
    get image() {
        if (!this.file)
            throw new Error('no file open');
        return this.file.image;
    }
    /** The file's name as the user gave it. */
    get fileName() {
        return this.file?.name ?? '';
    }
    /** -d ignore: discards and `write -z -u` leave allocation alone. */
    get unmap() {
        return this.file?.options.unmap ?? true;
    }
    /** Opens `name`; false after printing why not (`blk: NAME: ...`). */
    async open(name, options) {
        if (this.file) {
            this.error('file open already, try \'help close\'');
            return false;
        }
        try {
            this.file = await openIoFile(name, {
                ...options, backingProbe: options.backingProbe ?? this.backingProbe, rules: options.rules ?? this.rules,
            });
            return true;
        }
        catch (err) {
            this.report(err, name);
            return false;
        }
    }
    /** Completes the aio requests in flight, then closes the file (flushing it); false after printing a failure. */
    async close() {
        const file = this.file;
        if (!file)
            return true;
        await this.drain();
        this.file = undefined;
        try {
            await file.close();
            return true;
        }
        catch (err) {
            this.report(err, file.name);
            return false;
        }
    }
    /** After a completed write request: with a writethrough cache mode, make it durable now. */
    async afterWrite() {
        if (this.file?.options.cache.writethrough)
            await this.image.flush();
    }
    /** Waits for every aio request in flight. */
    async drain() {
        while (this.inflight.size > 0)
            await Promise.all([...this.inflight]);
    }
    track(p) {
        const wrapped = p.finally(() => this.inflight.delete(wrapped));
        this.inflight.add(wrapped);
    }
    out(text) {
        this.io.out(text);
    }
    /** Waits while the output's reader is behind (see `Output.drain`). */
    async outputDrained() {
        await this.io.drain?.();
    }
    /** Fails the request `what` before its buffer is allocated when it does not fit the image. */
    fits(what, offset, count) {
        const err = rangeError(this.image, offset, count);
        return err === undefined || this.failed(what, err);
    }
    /** The -v dump of `buf`, a piece at a time, waiting for a slow reader between pieces. */
    dump(buf, offset) {
        return dumpInPieces(buf, offset, (text) => this.io.out(text), () => this.outputDrained(), dumpBuffer);
    }
    /** `blk: FILE: message` on stderr, naming the open file. */
    error(message) {
        this.io.err(`blk: ${printable(this.fileName)}: ${printable(message)}\n`);
    }
    /** An error thrown by the library, as one line naming `name` (BlockErrors lead with their file already). */
    report(err, name = this.fileName) {
        const line = describeError(err);
        const path = err?.path;
        const named = typeof path === 'string' && line.startsWith(`${printable(path)}:`);
        this.io.err(named ? `blk: ${line}\n` : `blk: ${printable(name)}: ${line}\n`);
        this.debug(err);
    }
    /** qemu-io's `what failed: strerror` line for a failed request. */
    failed(what, err) {
        this.io.out(`${what} failed: ${strerror(err)}\n`);
        this.debug(err);
        return false;
    }
    debug(err) {
        if (debugEnabled())
            this.io.err(`blk: ${err instanceof Error ? err.stack ?? err.message : String(err)}\n`);
    }
    /** Runs one request and returns how long it took in seconds, or false after printing `what failed: ...`. */
    async timed(what, op) {
        const t1 = process.hrtime.bigint();
        try {
            await op();
        }
        catch (err) {
            return this.failed(what, err);
        }
        return elapsed(t1);
    }
    usage(ct) {
        this.io.out(`${ct.name} ${ct.args ?? ''} -- ${ct.oneline}\n`);
        return false;
    }
    /**
     * The `off len` operands of read, write and discard (qemu-io's checks and
     * messages); undefined after printing what is wrong. `nFlag`: the command
     * has write's -n, which lifts the length limit (and qemu-io's message says so).
     */
    request(operands, nFlag) {
        const offset = this.num(operands[0]);
        if (offset === undefined)
            return undefined;
        const count = this.num(operands[1]);
        if (count === undefined)
            return undefined;
        if (count > MAX_REQUEST && !nFlag?.given) {
            this.io.out(`length cannot exceed ${MAX_REQUEST}${nFlag ? ' without -n' : ''}, given ${operands[1]}\n`);
            return undefined;
        }
        return { offset, count };
    }
    /** cvtnum(): a size/offset with qemu's suffixes, or undefined after printing the error. */
    num(arg) {
        const r = parseSizeResult(arg);
        if (r.ok)
            return r.value;
        this.io.out(cvtnumError(r.error, arg));
        return undefined;
    }
}
