/**
 * An independent (test-side) reading of the UML COW layout, from
 * packages/cow/FORMAT.md §4-§5. Used only to find WHERE a given
 * sector's data, bitmap bit or header field lives, so a test can corrupt a
 * blk-made file on purpose, and to cross-check blk's headers. The real
 * judges of blk's bytes are uml_moo and the UML kernel.
 */
import { SECTOR } from './files.js';
const roundUp = (a, b) => Math.ceil(a / b) * b;
/** Geometry of a `variant` overlay over a backing file of `size` bytes (v3: alignment 4096). */
export function cowGeometry(variant, size, alignment = 4096) {
    switch (variant) {
        case 'v3': {
            const bitmapOffset = roundUp(4128, alignment);
            const bitmapLen = Math.ceil(Math.ceil(size / SECTOR) / 8);
            return {
                variant, headerSize: 4128, bitmapOffset, bitmapLen,
                dataOffset: roundUp(bitmapOffset + bitmapLen, alignment),
                mtimeField: { offset: 8, le: false },
            };
        }
        case 'v2-uml': {
            const bitmapLen = Math.floor((size + SECTOR - 1) / (8 * SECTOR));
            return {
                variant, headerSize: 4120, bitmapOffset: 4120, bitmapLen,
                dataOffset: roundUp(4120 + bitmapLen, SECTOR),
                mtimeField: { offset: 4104, le: false },
            };
        }
        case 'v1': {
            const bitmapLen = Math.floor((size + SECTOR - 1) / (8 * SECTOR));
            return {
                variant, headerSize: 280, bitmapOffset: 280, bitmapLen,
                dataOffset: roundUp(280 + bitmapLen, SECTOR),
                mtimeField: { offset: 264, le: true },
            };
        }
    }
}
/** Where sector `s` lives in the COW file. */
export function sectorDataOffset(g, s) {
    return g.dataOffset + s * SECTOR;
}
/** Bitmap byte offset and mask (LSB first) of sector `s`. */
export function sectorBit(g, s) {
    return { offset: g.bitmapOffset + Math.floor(s / 8), mask: 1 << (s % 8) };
}
function cstring(b, start, len) {
    const field = b.subarray(start, start + len);
    const nul = field.indexOf(0);
    return Buffer.from(nul < 0 ? field : field.subarray(0, nul)).toString('utf8');
}
export function parseCowHeader(file, variant) {
    const b = Buffer.from(file.buffer, file.byteOffset, file.byteLength);
    switch (variant) {
        case 'v3':
            return {
                magicOk: b.readUInt32BE(0) === 0x4f4f4f4d,
                version: b.readUInt32BE(4),
                mtime: b.readUInt32BE(8),
                size: b.readBigUInt64BE(12),
                sectorSize: b.readUInt32BE(20),
                alignment: b.readUInt32BE(24),
                cowFormat: b.readUInt32BE(28),
                backingFile: cstring(b, 32, 4096),
            };
        case 'v2-uml':
            return {
                magicOk: b.readUInt32BE(0) === 0x4f4f4f4d,
                version: b.readUInt32BE(4),
                backingFile: cstring(b, 8, 4096),
                mtime: b.readUInt32BE(4104),
                size: b.readBigUInt64BE(4108),
                sectorSize: b.readUInt32BE(4116),
            };
        case 'v1':
            return {
                magicOk: b.readUInt32LE(0) === 0x4f4f4f4d,
                version: b.readUInt32LE(4),
                backingFile: cstring(b, 8, 256),
                mtime: b.readUInt32LE(264),
                size: b.readBigUInt64LE(268),
                sectorSize: b.readUInt32LE(276),
            };
    }
}
