/** Chunk size of `SparseBytes`: small, so that copy-on-write of a chunk is cheap. */
const CHUNK = 4096;
/**
 * A sparse byte array with cheap copy-on-write clones: `clone()` copies the
 * chunk table, not the bytes, and a chunk is copied the first time a clone
 * writes to it. Used to keep the durable image of every simulated file and to
 * build thousands of post-crash states from it.
 */
export class SparseBytes {
    chunks;
    /** Chunks this instance may write in place (the rest are shared with other clones). */
    owned;
    length;
    constructor(length = 0, chunks) {
        this.length = length;
        this.chunks = chunks ?? new Map();
        this.owned = chunks ? new Set() : new Set();
    }
    static from(data) {
        const out = new SparseBytes();
        out.write(0, data);
        return out;
    }
    clone() {
        // Both sides lose ownership: whoever writes next copies the chunk.
        this.owned = new Set();
        return new SparseBytes(this.length, new Map(this.chunks));
    }
    read(offset, into) {
        const end = Math.min(offset + into.length, this.length);
        let pos = offset;
        while (pos < end) {
            const index = Math.floor(pos / CHUNK);
            const within = pos - index * CHUNK;
            const n = Math.min(CHUNK - within, end - pos);
            const chunk = this.chunks.get(index);
            if (chunk)
                into.set(chunk.subarray(within, within + n), pos - offset);
            else
                into.fill(0, pos - offset, pos - offset + n);
            pos += n;
        }
        return Math.max(0, end - offset);
    }
    write(offset, data) {
        let pos = 0;
        while (pos < data.length) {
            const abs = offset + pos;
            const index = Math.floor(abs / CHUNK);
            const within = abs - index * CHUNK;
            const n = Math.min(CHUNK - within, data.length - pos);
            this.writable(index).set(data.subarray(pos, pos + n), within);
            pos += n;
        }
        this.length = Math.max(this.length, offset + data.length);
    }
    truncate(size) {
        if (size < this.length) {
            const firstDropped = Math.ceil(size / CHUNK);
            for (const index of [...this.chunks.keys()]) {
                if (index >= firstDropped) {
                    this.chunks.delete(index);
                    this.owned.delete(index);
                }
            }
            const partialIndex = Math.floor(size / CHUNK);
            if (size % CHUNK !== 0 && this.chunks.has(partialIndex))
                this.writable(partialIndex).fill(0, size % CHUNK);
        }
        this.length = size;
    }
    /** Non-empty chunks as [offset, bytes] pairs (bytes may reach past `length`; clip when copying). */
    *extents() {
        for (const [index, chunk] of this.chunks)
            yield [index * CHUNK, chunk];
    }
    toBytes() {
        const out = new Uint8Array(this.length);
        this.read(0, out);
        return out;
    }
    writable(index) {
        let chunk = this.chunks.get(index);
        if (chunk && this.owned.has(index))
            return chunk;
        chunk = chunk ? chunk.slice() : new Uint8Array(CHUNK);
        this.chunks.set(index, chunk);
        this.owned.add(index);
        return chunk;
    }
}
