import { BlockError } from '../errors.js';
const FILE_TYPE_NAMES = {
    file: 'a regular file', directory: 'a directory', symlink: 'a symbolic link', 'block-device': 'a block device',
    'char-device': 'a character device', fifo: 'a FIFO (named pipe)', socket: 'a socket',
};
/** `a FIFO (named pipe)`, `a block device`, ...: a node type for messages. */
export function fileTypeName(type) {
    return type === undefined ? 'not a regular file' : FILE_TYPE_NAMES[type];
}
const ZERO_CHUNK = 1024 * 1024;
/**
 * Reserves [offset, offset+length) of `storage` as preallocation `mode` asks:
 * `falloc` through `Storage.allocate` where the storage and its file system
 * can (else zeros are written, as glibc's posix_fallocate does), `full` by
 * writing zeros. Only for ranges that read as zeros already (new space): the
 * fallback overwrites. `full` reserves the range first where it can, so that
 * a size the file system cannot hold fails at once with ENOSPC instead of
 * after filling the disk with zeros (every other process on it too).
 */
export async function preallocate(storage, offset, length, mode) {
    if (length <= 0)
        return;
    if (storage.allocate) {
        try {
            await storage.allocate(offset, length);
            if (mode === 'falloc')
                return;
        }
        catch (err) {
            if (!(err instanceof BlockError && err.kind === 'not-supported'))
                throw err;
        }
    }
    const zeros = new Uint8Array(Math.min(ZERO_CHUNK, length));
    for (let at = offset; at < offset + length; at += zeros.length) {
        const n = Math.min(zeros.length, offset + length - at);
        await storage.write(at, n === zeros.length ? zeros : zeros.subarray(0, n));
    }
}
/**
 * Reads exactly `into.length` bytes or zero-fills what lies past the end. Returns bytes really read.
 * A short read that stops before the end of the file is an I/O error, not a hole: zero-filling
 * it would show (and a read-modify-write would store) zeros nobody wrote.
 */
export async function readZeroFilled(storage, offset, into) {
    const n = await storage.read(offset, into);
    if (n < into.length) {
        await checkShortRead(storage, offset, n, into.length);
        into.fill(0, n);
    }
    return n;
}
/** Throws `io` (EIO) when a read of `wanted` bytes at `offset` returned `got` < wanted before the end of the file. */
export async function checkShortRead(storage, offset, got, wanted) {
    if (got >= wanted)
        return;
    const size = await storage.size();
    if (offset + got < size) {
        throw new BlockError('io', `short read: ${got} of ${wanted} bytes at offset ${offset}, inside a file of ${size} bytes`, { path: storage.path, offset: offset + got, code: 'EIO' });
    }
}
