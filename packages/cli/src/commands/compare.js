/**
 * blk compare: qemu-img compare. Exit 0 when the guest-visible contents are
 * equal, 1 when they differ (the first differing offset is printed), 2 on
 * error. Images of different sizes are equal when the larger one's tail
 * reads as zeros, unless -s (strict), which also compares allocation.
 * Offsets are reported as qemu-img does: the start of the first differing
 * 512-byte sector (counted from where the compared chunk starts).
 */
import { ChainCursor, isBlockError } from '@blk/core';
import { CHUNK, firstDifference, firstNonZero, openCli, rulesOf, yieldToEventLoop } from '../common.js';
import { createProgress } from '../progress.js';
/** `cursor` walks one image forward, asking each layer about each of its runs once. */
async function statusAt(cursor, size, offset, length) {
    const st = await cursor.at(offset, length);
    const allocated = st.depth !== undefined;
    return { allocated, zero: !allocated || st.zero, length: st.length, eof: offset + st.length === size };
}
/**
 * -s compares block status as qemu-img does, flags and all: a run that
 * reaches the end of one image and not of the other already differs (a
 * 1000-byte raw file, data then a 24-byte zero tail, against its 1024-byte
 * copy mismatches at offset 0, as with qemu-img). A driver may report one
 * run in pieces, so "reaches the end" is decided on the maximal run: the
 * pieces that follow are walked (once per image: the answer is remembered).
 */
class StrictStatus {
    image;
    /** From this offset on, the image is one run of equal status up to its end. */
    uniformFrom = Infinity;
    /** A cursor of its own: the look-ahead walks forward, once, apart from the comparison's cursor. */
    cursor;
    constructor(image) {
        this.image = image;
        this.cursor = new ChainCursor(image);
    }
    async reachesEnd(offset, st) {
        if (st.eof || offset >= this.uniformFrom)
            return true;
        const size = this.image.size;
        let pos = offset + st.length;
        while (pos < size) {
            const next = await statusAt(this.cursor, size, pos, size - pos);
            if (next.allocated !== st.allocated || next.zero !== st.zero)
                return false;
            pos += next.length;
            await yieldToEventLoop();
        }
        this.uniformFrom = offset;
        return true;
    }
}
async function sameStatus(s1, s2, offset, t1, t2) {
    if (s1.allocated !== s2.allocated || s1.zero !== s2.zero)
        return false;
    if (s1.eof === s2.eof)
        return true;
    return (await t1.reachesEnd(offset, s1)) === (await t2.reachesEnd(offset, s2));
}
export async function compare(a, b, opts) {
    const say = (line) => {
        if (!opts.quiet)
            process.stdout.write(`${line}\n`);
    };
    const shared = { readOnly: true, backingProbe: opts.backingProbe, forceShare: opts.forceShare, ...rulesOf(opts) };
    const first = await openCli(a, { ...shared, format: opts.format, backingFormat: opts.backingFormat });
    let second;
    try {
        second = await openCli(b, { ...shared, format: opts.secondFormat, backingFormat: opts.secondBackingFormat })
            .catch((err) => {
            // B's backing format has an option of its own: the advice must name that one.
            if (isBlockError(err, 'backing-format'))
                Object.assign(err, { option: '--second-backing-format' });
            throw err;
        });
        if (opts.strict && first.size !== second.size) {
            say('Strict mode: Image size mismatch!');
            return 1;
        }
        const common = Math.min(first.size, second.size);
        const total = Math.max(first.size, second.size);
        const progress = createProgress(Boolean(opts.progress) && !opts.quiet, total);
        const buf1 = new Uint8Array(CHUNK);
        const buf2 = new Uint8Array(CHUNK);
        const cursor1 = new ChainCursor(first);
        const cursor2 = new ChainCursor(second);
        const strict1 = new StrictStatus(first);
        const strict2 = new StrictStatus(second);
        let offset = 0;
        while (offset < common) {
            const s1 = await statusAt(cursor1, first.size, offset, common - offset);
            const s2 = await statusAt(cursor2, second.size, offset, common - offset);
            let chunk = Math.min(s1.length, s2.length);
            if (opts.strict && !(await sameStatus(s1, s2, offset, strict1, strict2))) {
                progress.done();
                say(`Strict mode: Offset ${offset} block status mismatch!`);
                return 1;
            }
            if (!(s1.zero && s2.zero)) {
                chunk = Math.min(chunk, CHUNK - (offset % CHUNK));
                let mismatch;
                if (s2.zero || s1.zero) {
                    const image = s1.zero ? second : first;
                    const data = buf1.subarray(0, chunk);
                    await image.readInto(offset, data);
                    const at = firstNonZero(data);
                    if (at >= 0)
                        mismatch = offset + at - (at % 512);
                }
                else {
                    const d1 = buf1.subarray(0, chunk);
                    const d2 = buf2.subarray(0, chunk);
                    await first.readInto(offset, d1);
                    await second.readInto(offset, d2);
                    const at = firstDifference(d1, d2);
                    if (at >= 0)
                        mismatch = offset + at - (at % 512);
                }
                if (mismatch !== undefined) {
                    progress.done();
                    say(`Content mismatch at offset ${mismatch}!`);
                    return 1;
                }
            }
            offset += chunk;
            progress.update(offset);
            await yieldToEventLoop();
        }
        if (first.size !== second.size) {
            progress.done();
            say('Warning: Image size mismatch!');
            const over = first.size > second.size ? first : second;
            const found = await firstNonZeroAfter(over, common, buf1);
            if (found !== undefined) {
                say(`Content mismatch at offset ${found}!`);
                return 1;
            }
        }
        progress.done();
        say('Images are identical.');
        return 0;
    }
    finally {
        await second?.close().catch(() => undefined);
        await first.close().catch(() => undefined);
    }
}
/** The first offset from `start` on that does not read as zero, or undefined. */
async function firstNonZeroAfter(image, start, buf) {
    const cursor = new ChainCursor(image);
    let offset = start;
    while (offset < image.size) {
        const st = await statusAt(cursor, image.size, offset, image.size - offset);
        let chunk = st.length;
        if (!st.zero) {
            chunk = Math.min(chunk, CHUNK - (offset % CHUNK));
            const data = buf.subarray(0, chunk);
            await image.readInto(offset, data);
            const at = firstNonZero(data);
            if (at >= 0)
                return offset + at - (at % 512);
        }
        offset += chunk;
        await yieldToEventLoop();
    }
    return undefined;
}
