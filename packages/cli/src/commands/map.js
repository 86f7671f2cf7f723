import { openCli, rulesOf } from '../common.js';
import { UsageError } from '../errors.js';
import { parseSize } from '../size.js';
import { printable } from '../printable.js';
import { PieceWriter } from '../output.js';
/** Walks [start, start+length) of `image` as qemu-img map's merged entries. */
export async function* mapEntries(image, start = 0, length = image.size - start) {
    const bottom = image.chain().length - 1;
    let pending;
    for await (const run of image.map(start, length)) {
        let e;
        if (run.depth === undefined) {
            e = { start: run.start, length: run.length, depth: bottom, present: false, zero: true, data: false };
        }
        else {
            e = { start: run.start, length: run.length, depth: run.depth, present: true, zero: run.zero, data: !run.zero };
            if (run.hostOffset !== undefined) {
                e.offset = run.hostOffset;
                if (run.path !== undefined)
                    e.filename = run.path;
            }
        }
        if (pending && mergeable(pending, e)) {
            pending.length += e.length;
            continue;
        }
        if (pending)
            yield pending;
        pending = e;
    }
    if (pending)
        yield pending;
}
/** qemu-img's entry_mergeable(). */
function mergeable(a, b) {
    if (a.zero !== b.zero || a.data !== b.data || a.depth !== b.depth || a.present !== b.present)
        return false;
    if ((a.filename === undefined) !== (b.filename === undefined) || (a.offset === undefined) !== (b.offset === undefined)) {
        return false;
    }
    if (a.filename !== undefined && a.filename !== b.filename)
        return false;
    if (a.offset !== undefined && a.offset + a.length !== b.offset)
        return false;
    return true;
}
/** printf("%#-16" PRIx64): `0` for zero, else `0x...`, left-aligned in 16 columns. */
function hex16(n) {
    return (n === 0 ? '0' : `0x${n.toString(16)}`).padEnd(16);
}
export function jsonEntry(e) {
    let s = `{ "start": ${e.start}, "length": ${e.length}, "depth": ${e.depth}, "present": ${e.present}, `
        + `"zero": ${e.zero}, "data": ${e.data}`;
    if (e.offset !== undefined)
        s += `, "offset": ${e.offset}`;
    return `${s}}`;
}
export async function map(file, opts) {
    const image = await openCli(file, {
        format: opts.format, readOnly: true, backingProbe: opts.backingProbe, backingFormat: opts.backingFormat,
        forceShare: opts.forceShare, onMismatch: 'accept', ...rulesOf(opts),
    });
    // Output is gathered into large pieces, and waits for a slow reader (memory stays bounded).
    const out = new PieceWriter(process.stdout);
    try {
        const start = opts.startOffset !== undefined ? parseSize(opts.startOffset, 'start offset') : 0;
        if (start > image.size)
            throw new UsageError(`${file}: start offset ${start} is past the end of the image (${image.size} bytes)`);
        let length = image.size - start;
        if (opts.maxLength !== undefined)
            length = Math.min(length, parseSize(opts.maxLength, 'length'));
        if (opts.output === 'json') {
            let prev;
            await out.write('[');
            for await (const e of mapEntries(image, start, length)) {
                if (prev)
                    await out.write(`${jsonEntry(prev)},\n`);
                prev = e;
            }
            await out.write(prev ? `${jsonEntry(prev)}]\n` : ']\n');
        }
        else {
            await out.write(`${'Offset'.padEnd(16)}${'Length'.padEnd(16)}${'Mapped to'.padEnd(16)}File\n`);
            // qemu-img's human format lists data runs only and does not tell zero kinds apart.
            let cur;
            const flush = () => {
                if (cur && cur.data && !cur.zero) {
                    return out.write(`${hex16(cur.start)}${hex16(cur.length)}${hex16(cur.offset ?? 0)}${printable(cur.filename ?? '')}\n`);
                }
                return undefined;
            };
            for await (const e0 of mapEntries(image, start, length)) {
                const e = { ...e0 };
                if (!e.data || e.zero) {
                    e.data = false;
                    e.zero = true;
                }
                if (e.data && e.offset === undefined) {
                    throw new Error(`${file}: the image has data at offset ${e.start} that is not stored at a known file offset`);
                }
                if (cur && mergeable(cur, e)) {
                    cur.length += e.length;
                    continue;
                }
                await flush();
                cur = e;
            }
            await flush();
        }
    }
    finally {
        await out.flush(); // Also what was made before an error, as when every line was written at once.
        await image.close();
    }
    return 0;
}
