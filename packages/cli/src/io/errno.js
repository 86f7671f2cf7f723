/** The errno text qemu-io prints after `read failed: ` and friends, as strerror() would. */
import { isBlockError } from '@blk/core';
const ERRNO = {
    EIO: 'Input/output error',
    ENOSPC: 'No space left on device',
    EACCES: 'Permission denied',
    EPERM: 'Operation not permitted',
    EROFS: 'Read-only file system',
    ENOENT: 'No such file or directory',
    EINVAL: 'Invalid argument',
    EFBIG: 'File too large',
    EDQUOT: 'Disk quota exceeded',
    EBADF: 'Bad file descriptor',
    ENOMEM: 'Cannot allocate memory',
};
function errnoText(code) {
    return (code !== undefined && ERRNO[code]) || 'Input/output error';
}
/** errno text for a failed request: a BlockError's kind, else its (or a Node error's) errno code. */
export function strerror(err) {
    if (isBlockError(err)) {
        switch (err.kind) {
            case 'out-of-range': return 'Input/output error';
            case 'invalid-argument': return 'Invalid argument';
            case 'not-supported': return 'Operation not supported';
            case 'read-only': return 'Permission denied';
            case 'probe-guard': return 'Operation not permitted';
            case 'closed': return 'Bad file descriptor';
            default: return errnoText(err.code);
        }
    }
    const code = typeof err === 'object' && err !== null && 'code' in err ? String(err.code) : undefined;
    return errnoText(code);
}
