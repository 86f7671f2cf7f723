/**
 * @blk/http/node: Node-only helpers. `tlsFetch` is a `fetch` for HttpStorage's
 * `fetch` option that trusts the certificate authorities you give (a private
 * CA, a self-signed server), which the global fetch of Node cannot be told
 * per request. (For the blk command, NODE_EXTRA_CA_CERTS=FILE does the same
 * process-wide.)
 */
import * as http from 'node:http';
import * as https from 'node:https';
import { Readable } from 'node:stream';

export interface TlsFetchOptions {
  /** PEM certificate(s) of the authorities to trust (replacing the default list, as node:tls does). */
  ca?: string | Uint8Array | Array<string | Uint8Array>;
  /** Client certificate and key (PEM), for servers that ask for one. */
  cert?: string | Uint8Array;
  key?: string | Uint8Array;
  /** Default true; false accepts any certificate (tests only). */
  rejectUnauthorized?: boolean;
  /** Redirects followed (default 5). */
  maxRedirects?: number;
}

const toBuffer = (v: string | Uint8Array) => (typeof v === 'string' ? v : Buffer.from(v));

/** A `fetch` (GET/HEAD, no request body) over node:https with these TLS settings; plain http: URLs work too. */
export function tlsFetch(options: TlsFetchOptions = {}): typeof fetch {
  const agent = new https.Agent({
    keepAlive: true,
    ...(options.ca !== undefined
      ? { ca: Array.isArray(options.ca) ? options.ca.map(toBuffer) : toBuffer(options.ca) }
      : {}),
    ...(options.cert !== undefined ? { cert: toBuffer(options.cert) } : {}),
    ...(options.key !== undefined ? { key: toBuffer(options.key) } : {}),
    rejectUnauthorized: options.rejectUnauthorized !== false,
  });
  const plain = new http.Agent({ keepAlive: true });
  const maxRedirects = options.maxRedirects ?? 5;

  const once = (url: URL, init: RequestInit | undefined): Promise<Response> =>
    new Promise((resolve, reject) => {
      const signal = init?.signal ?? undefined;
      if (signal?.aborted) return reject(signal.reason);
      const headers: Record<string, string> = {};
      new Headers(init?.headers).forEach((value, name) => {
        headers[name] = value;
      });
      const secure = url.protocol === 'https:';
      const req = (secure ? https : http).request(
        url,
        { method: init?.method ?? 'GET', headers, agent: secure ? agent : plain },
        (res) => {
          const h = new Headers();
          for (const [name, value] of Object.entries(res.headers)) {
            if (Array.isArray(value)) for (const v of value) h.append(name, v);
            else if (value !== undefined) h.set(name, value);
          }
          const status = res.statusCode ?? 0;
          const empty = status === 204 || status === 304 || init?.method === 'HEAD';
          const body = empty ? null : (Readable.toWeb(res) as ReadableStream<Uint8Array>);
          if (empty) res.resume();
          resolve(new Response(body, { status, statusText: res.statusMessage ?? '', headers: h }));
        },
      );
      const onAbort = () => req.destroy(signal?.reason instanceof Error ? signal.reason : new Error('aborted'));
      signal?.addEventListener('abort', onAbort, { once: true });
      req.on('close', () => signal?.removeEventListener('abort', onAbort));
      req.on('error', reject);
      req.end();
    });

  return (async (input: string | URL | Request, init?: RequestInit) => {
    let url = new URL(input instanceof Request ? input.url : String(input));
    for (let hop = 0; ; hop++) {
      const res = await once(url, init);
      const location = res.headers.get('location');
      if (res.status >= 300 && res.status < 400 && location !== null && init?.redirect !== 'manual') {
        await res.body?.cancel().catch(() => undefined);
        if (hop >= maxRedirects) throw new TypeError(`more than ${maxRedirects} redirects`);
        url = new URL(location, url);
        continue;
      }
      return res;
    }
  }) as typeof fetch;
}
export { nodeTransport, type NodeTransportOptions } from './node-transport.js';
