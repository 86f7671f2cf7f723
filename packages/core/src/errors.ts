/**
 * One error class for the whole framework, classified by a stable `kind`.
 *
 * Callers branch on `kind` (a string union that only ever grows), never on
 * message text. `path` names the file the problem is in, `field` the header
 * field when a header is at fault, and `offset` the byte offset when a range is.
 */
export type BlockErrorKind =
  /** The file is not of the format that was asked for (magic mismatch). */
  | 'bad-magic'
  /** The format is right but this version or variant is not supported. */
  | 'unsupported-version'
  /** The file ends inside its header or metadata. */
  | 'truncated'
  /** A header field holds a value that cannot be right (checked before use). */
  | 'invalid-header'
  /** No registered driver recognises the file, or a named format is unknown. */
  | 'unknown-format'
  /**
   * The file carries the signature of a known format that no registered
   * driver reads (qcow2, vmdk, ...); `format` names it. It is not guessed
   * to be raw: name the format raw to read its bytes as a disk.
   */
  | 'unsupported-format'
  /** The backing file named by an image does not exist. */
  | 'backing-missing'
  /** The backing file's size or mtime differs from what the overlay recorded. */
  | 'backing-mismatch'
  /** The backing path was refused by the caller's backing-file policy. */
  | 'backing-forbidden'
  /**
   * A backing file whose format nobody named carries another format's header;
   * it is not read as raw without being told (see BackingPolicy.format).
   */
  | 'backing-format'
  /** A backing chain refers back to an image already in it. */
  | 'backing-loop'
  /** A backing chain is deeper than the allowed maximum. */
  | 'chain-too-deep'
  /** A request reaches past the end of the image or has a bad offset/length. */
  | 'out-of-range'
  /** A write, truncate or create was attempted on a read-only image or storage. */
  | 'read-only'
  /** A write would make a probed raw image probe as another format. */
  | 'probe-guard'
  /** The operation is valid but this driver or variant cannot do it. */
  | 'not-supported'
  /** A caller-supplied argument is invalid. */
  | 'invalid-argument'
  /** The image or storage was used after close(). */
  | 'closed'
  /** Another process holds a conflicting lock on the file. */
  | 'locked'
  /** The file to create exists already. */
  | 'exists'
  /**
   * The path names no image file: a FIFO, socket, character device or
   * directory (or a block device where only regular files are accepted).
   */
  | 'special-file'
  /** The underlying storage failed (EIO, ENOSPC, short write, ...). */
  | 'io'
  /** The caller's AbortSignal stopped a long operation or job (between two of its steps). */
  | 'aborted';

export interface BlockErrorContext {
  /** The file the problem is in. */
  path?: string;
  /** The header field at fault. */
  field?: string;
  /** The byte offset at fault. */
  offset?: number;
  /** The driver that raised it. */
  driver?: string;
  /** The format the file was recognised as (`unsupported-format`, `backing-format`). */
  format?: string;
  /** The original error (I/O errors keep the system error here). */
  cause?: unknown;
  /** errno-style code of an I/O error (EIO, ENOSPC, ENOENT, ...). */
  code?: string;
  /** Backing-chain errors: the level of the file at fault (1 = the opened image's backing file). */
  depth?: number;
}

export class BlockError extends Error {
  readonly kind: BlockErrorKind;
  readonly path: string | undefined;
  readonly field: string | undefined;
  readonly offset: number | undefined;
  readonly driver: string | undefined;
  readonly format: string | undefined;
  readonly code: string | undefined;
  /** Backing-chain errors: the level of the file at fault (1 = the opened image's backing file). */
  readonly depth: number | undefined;
  /** The message without the leading path, for re-titling an error with another name for the file. */
  readonly detail: string;

  constructor(kind: BlockErrorKind, message: string, context: BlockErrorContext = {}) {
    // The path leads the message so that a CLI can print it as one clear line.
    super(
      context.path !== undefined ? `${context.path}: ${message}` : message,
      context.cause !== undefined ? { cause: context.cause } : undefined,
    );
    this.name = 'BlockError';
    this.detail = message;
    this.kind = kind;
    this.path = context.path;
    this.field = context.field;
    this.offset = context.offset;
    this.driver = context.driver;
    this.format = context.format;
    this.code = context.code;
    this.depth = context.depth;
  }
}

export function isBlockError(err: unknown, kind?: BlockErrorKind): err is BlockError {
  return err instanceof BlockError && (kind === undefined || err.kind === kind);
}

/** Wraps a system error from a storage backend as a typed `io` error naming the file. */
export function ioError(path: string, op: string, cause: unknown, offset?: number): BlockError {
  if (cause instanceof BlockError) return cause;
  const code =
    typeof cause === 'object' && cause !== null && 'code' in cause
      ? String((cause as { code: unknown }).code)
      : undefined;
  const detail = cause instanceof Error ? cause.message : String(cause);
  return new BlockError('io', `${op} failed${offset !== undefined ? ` at offset ${offset}` : ''}: ${detail}`, {
    path,
    cause,
    offset,
    code,
  });
}

/**
 * Gives a storage error the user's name for the file: the storage saw the
 * absolute path, but a message should name the file as the user spelled it.
 */
export function retitle(err: unknown, path: string): unknown {
  if (isBlockError(err) && err.path !== path) {
    return new BlockError(err.kind, err.detail, {
      path,
      cause: err,
      code: err.code,
      offset: err.offset,
      field: err.field,
      driver: err.driver,
      format: err.format,
      depth: err.depth,
    });
  }
  return err;
}

/** An error as a system call would report it: errno name, Linux errno number and strerror(3) text. */
export interface Errno {
  /** `EIO`, `ENOSPC`, ... */
  code: string;
  /** The Linux number (NBD's error numbers are these for the codes it defines). */
  errno: number;
  /** strerror(3)'s text, as qemu-io prints it after `read failed: `. */
  message: string;
}

const ERRNO_TABLE: Readonly<Record<string, readonly [number, string]>> = {
  EPERM: [1, 'Operation not permitted'],
  ENOENT: [2, 'No such file or directory'],
  EIO: [5, 'Input/output error'],
  ENXIO: [6, 'No such device or address'],
  EBADF: [9, 'Bad file descriptor'],
  EAGAIN: [11, 'Resource temporarily unavailable'],
  ENOMEM: [12, 'Cannot allocate memory'],
  EACCES: [13, 'Permission denied'],
  EEXIST: [17, 'File exists'],
  ENODEV: [19, 'No such device'],
  ENOTDIR: [20, 'Not a directory'],
  EISDIR: [21, 'Is a directory'],
  EINVAL: [22, 'Invalid argument'],
  EFBIG: [27, 'File too large'],
  ENOSPC: [28, 'No space left on device'],
  EROFS: [30, 'Read-only file system'],
  EOVERFLOW: [75, 'Value too large for defined data type'],
  ENOTSUP: [95, 'Operation not supported'],
  ESHUTDOWN: [108, 'Cannot send after transport endpoint shutdown'],
  ETIMEDOUT: [110, 'Connection timed out'],
  ESTALE: [116, 'Stale file handle'],
  EDQUOT: [122, 'Disk quota exceeded'],
};

/** The errno a BlockError of each kind stands for when its `code` does not say (QEMU's block layer choices). */
const KIND_ERRNO: Partial<Record<BlockErrorKind, string>> = {
  'out-of-range': 'EIO',
  'invalid-argument': 'EINVAL',
  'not-supported': 'ENOTSUP',
  // qemu-io on an image opened read-only: "write failed: Permission denied".
  'read-only': 'EACCES',
  'probe-guard': 'EPERM',
  closed: 'EBADF',
};

function errnoFor(code: string): Errno | undefined {
  const entry = ERRNO_TABLE[code];
  return entry === undefined ? undefined : { code, errno: entry[0], message: entry[1] };
}

/**
 * The errno an error stands for, in one place for every front end (qemu-io's
 * `read failed: Input/output error`, an NBD server's reply): a BlockError of a
 * kind with a fixed meaning maps by kind; otherwise its `code` (or a system
 * error's, e.g. Node's `code: 'ENOSPC'`) when known; anything else is EIO.
 */
export function errnoOf(err: unknown): Errno {
  if (err instanceof BlockError) {
    const byKind = KIND_ERRNO[err.kind];
    if (byKind !== undefined) return errnoFor(byKind)!;
  }
  const code = typeof err === 'object' && err !== null && 'code' in err ? (err as { code: unknown }).code : undefined;
  return (typeof code === 'string' ? errnoFor(code) : undefined) ?? errnoFor('EIO')!;
}
