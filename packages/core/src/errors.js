export class BlockError extends Error {
    kind;
    path;
    field;
    offset;
    driver;
    format;
    code;
    /** Backing-chain errors: the level of the file at fault (1 = the opened image's backing file). */
    depth;
    /** The message without the leading path, for re-titling an error with another name for the file. */
    detail;
    constructor(kind, message, context = {}) {
        // The path leads the message so that a CLI can print it as one clear line.
        super(context.path !== undefined ? `${context.path}: ${message}` : message, context.cause !== undefined ? { cause: context.cause } : undefined);
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
export function isBlockError(err, kind) {
    return err instanceof BlockError && (kind === undefined || err.kind === kind);
}
/** Wraps a system error from a storage backend as a typed `io` error naming the file. */
export function ioError(path, op, cause, offset) {
    if (cause instanceof BlockError)
        return cause;
    const code = typeof cause === 'object' && cause !== null && 'code' in cause
        ? String(cause.code) : undefined;
    const detail = cause instanceof Error ? cause.message : String(cause);
    return new BlockError('io', `${op} failed${offset !== undefined ? ` at offset ${offset}` : ''}: ${detail}`, { path, cause, offset, code });
}
/**
 * Gives a storage error the user's name for the file: the storage saw the
 * absolute path, but a message should name the file as the user spelled it.
 */
export function retitle(err, path) {
    if (isBlockError(err) && err.path !== path) {
        return new BlockError(err.kind, err.detail, {
            path, cause: err, code: err.code, offset: err.offset, field: err.field, driver: err.driver, format: err.format,
            depth: err.depth,
        });
    }
    return err;
}
