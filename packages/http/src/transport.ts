/**
 * The one thing HttpStorage asks of the network: send a GET, give the status and headers, read the
 * body into a buffer it owns. `fetchTransport` does it with any `fetch` (browsers, Node, a test's);
 * `nodeTransport` (@blk/http/node) does it over node:net/node:tls sockets with the body read
 * straight into that buffer, which is what a sequential read needs to come near curl (Node's fetch
 * hands the body over as a web stream of 64 KiB chunks, at a third to a half of curl's speed on loopback here, before any copy).
 */

/** One GET. */
export interface TransportRequest {
  url: string;
  /** The headers to send as they are (`Host` is the transport's). */
  headers: Record<string, string>;
  /** Aborts the request and its body: the pending call rejects. */
  signal: AbortSignal;
}

/** The answer to a GET: its head now, its body on demand. */
export interface TransportResponse {
  readonly status: number;
  readonly statusText: string;
  /** A header's value (case-insensitive name), or null. */
  header(name: string): string | null;
  /**
   * Reads the next bytes of the body into `into`, calling `progress(got)` as bytes arrive. `got` is
   * what was read (less than `into.length` when the body ended sooner); `more` is true when the body
   * goes on past `into`: another call reads on, `discard` drops the rest.
   */
  readInto(into: Uint8Array, progress?: (got: number) => void): Promise<{ got: number; more: boolean }>;
  /** Drops the rest of the body (nothing when it was read): the connection is freed. */
  discard(): Promise<void>;
}

/** Sends a GET (following redirects) and resolves with its answer once the head is in. */
export type RangeTransport = (request: TransportRequest) => Promise<TransportResponse>;

/** A transport over `fetch` (redirects followed by it). */
export function fetchTransport(f: typeof fetch): RangeTransport {
  return async ({ url, headers, signal }) => {
    const res = await f(url, { method: 'GET', headers, signal, redirect: 'follow' });
    let reader: ReadableStreamDefaultReader<Uint8Array> | undefined;
    /** What a read took from the stream and the caller had no room for. */
    let held: Uint8Array | undefined;
    let ended = false;
    const next = async (): Promise<Uint8Array | undefined> => {
      if (held !== undefined) {
        const h = held;
        held = undefined;
        return h;
      }
      if (ended) return undefined;
      reader ??= res.body?.getReader();
      const r = reader ? await reader.read() : { done: true as const, value: undefined };
      if (r.done) {
        ended = true;
        reader?.releaseLock();
        return undefined;
      }
      return r.value;
    };
    return {
      status: res.status,
      statusText: res.statusText,
      header: (name) => res.headers.get(name),
      async readInto(into, progress) {
        let got = 0;
        for (;;) {
          const value = await next();
          if (value === undefined) return { got, more: false };
          if (value.length === 0) continue;
          if (got === into.length) {
            held = value;
            return { got, more: true };
          }
          const n = Math.min(value.length, into.length - got);
          into.set(value.subarray(0, n), got);
          got += n;
          if (n < value.length) held = value.subarray(n);
          progress?.(got);
          if (held !== undefined) return { got, more: true };
        }
      },
      async discard() {
        if (ended) return;
        ended = true;
        held = undefined;
        if (reader) await reader.cancel().catch(() => undefined);
        else await res.body?.cancel().catch(() => undefined);
      },
    };
  };
}
