/** What `blk info` says about an image: qemu-img's ImageInfo fields. */
import * as fs from 'node:fs';
import { allocatedBytes, mtimeSec } from './common.js';
import { sizeToStr } from './format.js';
import { qdictOrder } from './qjson.js';
import { printable, printableBytes } from './printable.js';
/** camelCase / snake_case keys to QAPI's kebab-case. */
export function kebab(key) {
    return key.replace(/_/g, '-').replace(/([a-z0-9])([A-Z])/g, '$1-$2').toLowerCase();
}
/** Driver facts as JSON values with QAPI-style keys (functions, buffers and undefined dropped). */
export function toQValue(value) {
    if (value === null)
        return null;
    switch (typeof value) {
        case 'string':
        case 'boolean':
            return value;
        case 'number':
            return Number.isFinite(value) ? value : undefined;
        case 'bigint':
            return Number(value);
        case 'object': {
            if (ArrayBuffer.isView(value))
                return undefined;
            if (Array.isArray(value))
                return value.map((v) => toQValue(v) ?? null);
            const out = {};
            for (const [k, v] of Object.entries(value)) {
                const q = toQValue(v);
                if (q !== undefined)
                    out[kebab(k)] = q;
            }
            return out;
        }
        default:
            return undefined;
    }
}
/** qemu-img info's fields for one opened image. */
export function describeImage(image, o) {
    const info = image.info();
    const e = {};
    e.filename = o.filename;
    e.format = info.format;
    e['virtual-size'] = info.size;
    const actual = allocatedBytes(image.path);
    if (actual !== undefined)
        e['actual-size'] = actual;
    e['dirty-flag'] = false;
    const ref = image.backingReference;
    if (info.backing) {
        e['backing-filename'] = info.backing.stored;
        // No resolved path (stored bytes that are not UTF-8): none is shown rather than a wrong one.
        if (info.backing.resolved !== undefined)
            e['full-backing-filename'] = info.backing.resolved;
        // The format the backing file was opened as; when it was not opened, the one it would open as.
        const fmt = image.backing?.format ?? o.backingFormat ?? info.backing.format ?? (o.backingProbe ? undefined : 'raw');
        if (fmt !== undefined)
            e['backing-filename-format'] = fmt;
        if (o.verdict) {
            e['backing-allowed'] = o.verdict.allowed;
            if (o.verdict.reason !== undefined)
                e['backing-refusal'] = o.verdict.reason;
        }
    }
    const data = (toQValue(info.formatSpecific) ?? {});
    const resolved = info.backing?.resolved;
    if (ref?.expect && resolved !== undefined && fs.existsSync(resolved)) {
        if (ref.expect.mtimeSec !== undefined) {
            const now = mtimeSec(resolved);
            if (now !== undefined)
                data['backing-mtime-matches'] = ref.expect.mtimeSec === now % 2 ** 32;
        }
        if (ref.expect.size !== undefined) {
            // Without opening it: a raw backing file's size is its length.
            const assumed = o.backingFormat ?? info.backing?.format;
            const rawBacking = assumed === 'raw' || (assumed === undefined && !o.backingProbe);
            const backingSize = image.backing?.size ?? (rawBacking ? fs.statSync(resolved).size : undefined);
            if (backingSize !== undefined)
                data['backing-size-matches'] = ref.expect.size === backingSize;
        }
    }
    if (Object.keys(data).length > 0)
        e['format-specific'] = { type: info.format, data };
    return e;
}
function dumpQValue(value, indent, out) {
    const pad = '    '.repeat(indent);
    if (value !== null && typeof value === 'object') {
        if (Array.isArray(value)) {
            value.forEach((item, i) => {
                if (item !== null && typeof item === 'object') {
                    out.push(`${pad}[${i}]:`);
                    dumpQValue(item, indent + 1, out);
                }
                else {
                    out.push(`${pad}[${i}]: ${scalar(item)}`);
                }
            });
            return;
        }
        for (const key of qdictOrder(value)) {
            const v = value[key];
            const name = key.replace(/-/g, ' ');
            if (v !== null && typeof v === 'object') {
                out.push(`${pad}${name}:`);
                dumpQValue(v, indent + 1, out);
            }
            else {
                out.push(`${pad}${name}: ${scalar(v)}`);
            }
        }
    }
}
function scalar(v) {
    if (v === null)
        return 'null';
    return printable(String(v));
}
/** qemu-img info's human output for one image (lines, no trailing newline; names from images escaped). */
export function humanInfo(e, extras = {}) {
    const lines = [];
    lines.push(`image: ${printable(String(e.filename))}`);
    lines.push(`file format: ${String(e.format)}`);
    const vsize = e['virtual-size'];
    lines.push(`virtual size: ${sizeToStr(vsize)} (${vsize} bytes)`);
    const actual = e['actual-size'];
    lines.push(`disk size: ${typeof actual === 'number' ? sizeToStr(actual) : 'unavailable'}`);
    if (e['dirty-flag'] === true)
        lines.push('cleanly shut down: no');
    const bf = e['backing-filename'];
    if (typeof bf === 'string') {
        const full = e['full-backing-filename'];
        const stored = extras.storedBackingBytes;
        let line = `backing file: ${stored ? printableBytes(stored) : printable(bf)}`;
        if (stored)
            line += ' (not valid UTF-8: blk will not open it)';
        else if (typeof full !== 'string')
            line += ' (cannot determine actual path)';
        else if (full !== bf)
            line += ` (actual path: ${printable(full)})`;
        lines.push(line);
    }
    if (typeof e['backing-filename-format'] === 'string')
        lines.push(`backing file format: ${printable(e['backing-filename-format'])}`);
    if (typeof e['backing-allowed'] === 'boolean') {
        lines.push(`backing file allowed: ${e['backing-allowed'] ? 'yes' : `no (${printable(String(e['backing-refusal'] ?? 'refused'))})`}`);
    }
    const fs_ = e['format-specific'];
    if (fs_ && typeof fs_.data === 'object' && fs_.data !== null) {
        lines.push('Format specific information:');
        dumpQValue(fs_.data, 1, lines);
    }
    return lines.join('\n');
}
