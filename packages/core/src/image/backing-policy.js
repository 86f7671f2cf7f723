import { BlockError } from '../errors.js';
import { fileTypeName } from '../storage/storage.js';
import { normalizePosix } from '../posix-path.js';
/** Default and documented limit on backing-chain depth (the top image is depth 0). */
export const DEFAULT_MAX_CHAIN_DEPTH = 16;
/** Throws `backing-forbidden` when the policy's `approve` rule refuses `backing` for `overlay`. */
export async function checkApproval(policy, overlay, backing) {
    if (!policy.approve)
        return;
    const reason = await policy.approve(overlay, backing);
    if (reason !== undefined)
        throw new BlockError('backing-forbidden', `backing file ${backing}: ${reason}`, { path: overlay });
}
/**
 * The stored path of `ref` when it is exactly what the image holds; throws
 * `not-supported` when the stored bytes are not valid UTF-8 (see
 * BackingReference.rawPath): opening or rewriting the decoded string would
 * name a different file than the one UML opens.
 */
export function exactBackingPath(ref, imagePath) {
    if (ref.rawPath !== undefined) {
        const shown = Array.from(ref.rawPath, (b) => (b >= 0x20 && b < 0x7f && b !== 0x5c ? String.fromCharCode(b) : `\\x${b.toString(16).padStart(2, '0')}`)).join('');
        throw new BlockError('not-supported', `backing file path "${shown}" is not valid UTF-8; blk keeps paths as text and would name a different file, `
            + 'so it neither opens nor rewrites it (use backing.overridePath, uml_moo -b, or rebase -u onto a UTF-8 name)', { path: imagePath, field: 'backing_file' });
    }
    return ref.path;
}
/**
 * Resolves a stored backing path: absolute paths stay; relative ones are
 * resolved against the directory of the image that names them, never the
 * process's working directory.
 */
export function resolveBackingPath(vfs, imagePath, stored) {
    if (stored.length === 0) {
        throw new BlockError('invalid-header', 'backing file path is empty', { path: imagePath, field: 'backing_file' });
    }
    if (stored.includes('\0')) {
        throw new BlockError('invalid-header', 'backing file path contains a NUL byte', { path: imagePath, field: 'backing_file' });
    }
    return vfs.resolve(vfs.dirname(imagePath), stored);
}
/** Throws `backing-forbidden` unless `path` (and its real path) lies inside an allowed directory. */
export async function checkConfinement(vfs, policy, imagePath, path) {
    const dirs = policy.allowedDirs;
    if (!dirs)
        return;
    const allowed = await Promise.all(dirs.map(async (dir) => {
        const abs = vfs.resolve(vfs.cwd(), dir);
        let real = abs;
        try {
            real = await vfs.realpath(abs);
        }
        catch {
            // A missing allowed directory allows nothing extra; keep its literal form.
        }
        return [abs, real];
    }));
    const inside = (candidate) => allowed.some(([abs, real]) => within(abs, candidate) || within(real, candidate));
    if (!inside(path)) {
        throw new BlockError('backing-forbidden', `backing file ${path} lies outside the allowed directories (${dirs.join(', ')})`, { path: imagePath });
    }
    let real;
    try {
        real = await vfs.realpath(path);
    }
    catch {
        return; // Missing: reported as backing-missing by the caller.
    }
    if (!inside(real)) {
        throw new BlockError('backing-forbidden', `backing file ${path} is a symlink leading out of the allowed directories (to ${real})`, { path: imagePath });
    }
}
function within(dir, path) {
    const d = normalizePosix(dir);
    const p = normalizePosix(path);
    return d === '/' || p === d || p.startsWith(`${d}/`);
}
/**
 * Refuses a backing file by what kind of node it is, before it is opened: a
 * FIFO, socket, character device or directory is no image (and opening a
 * FIFO would block), and a block device is refused unless the policy allows devices.
 */
export function checkBackingNode(policy, overlayPath, backingPath, st) {
    const type = st.type;
    if (type === 'fifo' || type === 'socket' || type === 'char-device' || type === 'directory') {
        throw new BlockError('special-file', `backing file ${backingPath} is ${fileTypeName(type)}, not an image file`, { path: overlayPath });
    }
    if (type === 'block-device' && policy.allowDevices !== true) {
        throw new BlockError('backing-forbidden', `backing file ${backingPath} is a block device; an image may name one only when devices are allowed `
            + `(backing.allowDevices; blk --backing-devices), for images you trust`, { path: overlayPath });
    }
}
