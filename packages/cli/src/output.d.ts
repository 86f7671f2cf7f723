/**
 * Output that respects backpressure. A write to a pipe whose reader is slow
 * (or stopped: `blk map | less`) is queued in memory by Node; without
 * waiting for 'drain' a long listing grows that queue without bound (over
 * a gigabyte for a fragmented 1 TiB image, then ENOBUFS). Writers here wait
 * for the queue to drain whenever the stream says it is full.
 */
/** Resolves once `stream` has room again (or is gone: a closed pipe ends the command through its 'error' handler). */
export declare function drained(stream: NodeJS.WritableStream & {
    writableNeedDrain?: boolean;
    destroyed?: boolean;
}): Promise<void>;
/** Writes `text` to `stream`, waiting while the stream's buffer is full. */
export declare function writeWithBackpressure(stream: NodeJS.WritableStream, text: string): Promise<void>;
/**
 * Gathers small pieces of text into large writes to `stream` (one write per
 * line costs more than making the line), waiting for the stream to drain
 * between writes, so at most about two pieces are held at any time.
 */
export declare class PieceWriter {
    private readonly stream;
    private parts;
    private size;
    constructor(stream?: NodeJS.WritableStream);
    /** Adds `text`; returns a promise only when a piece was written and the stream is full (await it then). */
    write(text: string): Promise<void> | undefined;
    /** Writes what was gathered and waits until the stream has room. */
    flush(): Promise<void>;
}
