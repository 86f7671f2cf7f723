import { BlockError } from '@blk/core/portable';

/** The name of a DOMException (or any error with a `name`), else ''. */
export function domName(err: unknown): string {
  return typeof err === 'object' && err !== null && typeof (err as { name?: unknown }).name === 'string'
    ? (err as { name: string }).name
    : '';
}

/**
 * A browser storage error as a typed BlockError naming the file: OPFS's
 * `NoModificationAllowedError` (another handle holds the file) is `locked`,
 * `NotFoundError` is `io` ENOENT, `QuotaExceededError` is `io` ENOSPC,
 * `InvalidStateError` (a closed handle) is `closed`, the rest `io` EIO.
 */
export function browserError(err: unknown, path: string, what: string): BlockError {
  if (err instanceof BlockError) return err;
  const name = domName(err);
  const detail = err instanceof Error ? err.message : String(err);
  switch (name) {
    case 'NoModificationAllowedError':
      return new BlockError('locked', `${what}: another handle holds the file (${detail})`, {
        path,
        code: 'EAGAIN',
        cause: err,
      });
    case 'NotFoundError':
      return new BlockError('io', `${what}: no such file or directory`, { path, code: 'ENOENT', cause: err });
    case 'TypeMismatchError':
      return new BlockError('special-file', `${what}: a directory, not a file`, { path, code: 'EISDIR', cause: err });
    case 'QuotaExceededError':
      return new BlockError('io', `${what}: the origin's storage quota is exhausted (${detail})`, {
        path,
        code: 'ENOSPC',
        cause: err,
      });
    case 'InvalidStateError':
      return new BlockError('closed', `${what}: the handle is closed (${detail})`, { path, code: 'EBADF', cause: err });
    case 'NotReadableError':
      return new BlockError('io', `${what}: the file changed or cannot be read (${detail})`, {
        path,
        code: 'EIO',
        cause: err,
      });
    default:
      return new BlockError('io', `${what}: ${name ? `${name}: ` : ''}${detail}`, { path, code: 'EIO', cause: err });
  }
}
