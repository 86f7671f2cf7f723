import { CopyPipeline, isZero, sameBytes, yieldToEventLoop } from './common.js';
/** Copies `source` (its whole virtual size) into `target` at the same offsets. */
export async function copyImageData(source, target, o) {
    const granule = o.sparseSize > 0 ? o.sparseSize : 512;
    const against = o.against;
    const writeAll = o.writeAll ?? false;
    const pipeline = new CopyPipeline(o.depth, () => ({
        buf: new Uint8Array(o.chunk), bbuf: against ? new Uint8Array(o.chunk) : undefined,
    }));
    const order = o.outOfOrder ? undefined : new WriteOrder();
    let done = 0;
    const advance = (n) => {
        done += n;
        o.onProgress?.(done);
    };
    const copyRange = async (start, end, zeroRun) => {
        for (let pos = start; pos < end;) {
            const n = Math.min(o.chunk - (pos % o.chunk), end - pos);
            const at = pos;
            const turn = order?.next();
            await pipeline.start(async ({ buf, bbuf }) => {
                try {
                    const data = buf.subarray(0, n);
                    if (zeroRun)
                        data.fill(0);
                    else
                        await source.readInto(at, data);
                    let base;
                    if (against && bbuf) {
                        base = bbuf.subarray(0, n);
                        const inside = Math.max(0, Math.min(n, against.size - at));
                        if (inside < n)
                            base.fill(0, inside);
                        if (inside > 0)
                            await against.readInto(at, base.subarray(0, inside));
                    }
                    await turn?.ready;
                    await writeChanged(target, at, data, base, granule, writeAll);
                    advance(n);
                }
                finally {
                    turn?.done();
                }
            });
            pos += n;
            await yieldToEventLoop();
        }
    };
    const zeroRange = async (start, end) => {
        for (let pos = start; pos < end;) {
            const n = Math.min(o.chunk - (pos % o.chunk), end - pos);
            const at = pos;
            const turn = order?.next();
            await pipeline.start(async ({ bbuf }) => {
                try {
                    // Data that is all zeros already (a probe-guarded head or tail written as zeros, say) needs nothing.
                    const current = bbuf.subarray(0, n);
                    await against.readInto(at, current);
                    await turn?.ready;
                    if (!isZero(current))
                        await target.writeZeroes(at, n, { mayUnmap: true });
                    advance(n);
                }
                finally {
                    turn?.done();
                }
            });
            pos += n;
            await yieldToEventLoop();
        }
    };
    try {
        for await (const run of source.map()) {
            const runEnd = run.start + run.length;
            const zeroRun = run.depth === undefined || run.zero;
            if (!zeroRun || writeAll) {
                await copyRange(run.start, runEnd, zeroRun);
            }
            else if (!against) {
                // Reads as zeros in the target already: leave a hole.
                advance(run.length);
            }
            else {
                // Zeros over something else: only where that something does not read as zeros already, and
                // as QEMU's write-zeroes with unmap (a raw file gets a hole, a cow overlay drops or writes zeros).
                for await (const sub of against.map(run.start, Math.min(run.length, Math.max(0, against.size - run.start)))) {
                    if (sub.depth === undefined || sub.zero)
                        advance(sub.length);
                    else
                        await zeroRange(sub.start, sub.start + sub.length);
                }
                const beyond = Math.max(0, runEnd - Math.max(run.start, against.size));
                advance(beyond);
            }
        }
        await pipeline.drain();
    }
    finally {
        await pipeline.settle();
    }
}
/** Hands out turns: each turn is ready once the previous one is done (done() always runs, on failure too). */
class WriteOrder {
    last = Promise.resolve();
    next() {
        const ready = this.last;
        let done;
        this.last = new Promise((resolve) => { done = resolve; });
        return { ready, done };
    }
}
/**
 * Writes the granules of `data` (at image offset `pos`) that are not zero
 * (or, with `base`, that differ from it), coalescing neighbours into one
 * write. Granules are aligned to absolute multiples of `granule`.
 */
async function writeChanged(out, pos, data, base, granule, writeAll) {
    if (writeAll) {
        await out.write(pos, data);
        return;
    }
    const end = pos + data.length;
    let pending = -1;
    for (let g = pos; g < end;) {
        const gEnd = Math.min(g - (g % granule) + granule, end);
        const from = g - pos, to = gEnd - pos;
        // Without a base, a non-zero first or last byte settles it without a compare (the usual case for data).
        const skip = base
            ? sameBytes(data.subarray(from, to), base.subarray(from, to))
            : data[from] === 0 && data[to - 1] === 0 && isZero(data.subarray(from, to));
        if (!skip) {
            if (pending < 0)
                pending = g;
        }
        else if (pending >= 0) {
            await out.write(pending, data.subarray(pending - pos, g - pos));
            pending = -1;
        }
        g = gEnd;
    }
    if (pending >= 0)
        await out.write(pending, data.subarray(pending - pos));
}
