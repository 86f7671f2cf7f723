// A small static HTTP server for the demo, the browser tests and the bench: files from a
// directory (or a map of URL paths to files/strings), GET and HEAD, single byte ranges (206 with
// Content-Range, 416 past the end), Last-Modified (the file's mtime) and a strong ETag, so that
// HttpStorage sees what nginx would send. Loopback only.
import { createReadStream, statSync } from 'node:fs';
import { createServer } from 'node:http';
import * as path from 'node:path';

const TYPES = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.map': 'application/json',
};

/**
 * Serves `routes` (URL path -> absolute file path, or { body, type }) and, for other paths, files
 * under `root` (when given). Resolves to { server, origin, close, requests } once listening on
 * 127.0.0.1 (`port` 0: any free port). `requests` counts requests by URL path.
 */
export function startStaticServer({ root, routes = {}, port = 0, headers = {} } = {}) {
  const requests = new Map();
  const server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://x');
    const name = decodeURIComponent(url.pathname);
    requests.set(name, (requests.get(name) ?? 0) + 1);
    for (const [k, v] of Object.entries(headers)) res.setHeader(k, v);
    if (req.method === 'OPTIONS') {
      res.writeHead(204).end();
      return;
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405).end();
      return;
    }
    let route = routes[name] ?? (name.endsWith('/') ? routes[`${name}index.html`] : undefined);
    if (route === undefined && root !== undefined) {
      const file = path.join(root, path.normalize(name.endsWith('/') ? `${name}index.html` : name));
      if (!file.startsWith(root)) {
        res.writeHead(403).end();
        return;
      }
      route = file;
    }
    if (route === undefined) {
      res.writeHead(404).end('not found');
      return;
    }
    if (typeof route === 'object') {
      const body = Buffer.from(route.body);
      res.writeHead(200, { 'Content-Type': route.type ?? 'application/octet-stream', 'Content-Length': body.length });
      res.end(req.method === 'HEAD' ? undefined : body);
      return;
    }
    let st;
    try {
      st = statSync(route);
    } catch {
      res.writeHead(404).end('not found');
      return;
    }
    if (!st.isFile()) {
      res.writeHead(404).end('not found');
      return;
    }
    const size = st.size;
    const common = {
      'Content-Type': TYPES[path.extname(route)] ?? 'application/octet-stream',
      'Accept-Ranges': 'bytes',
      'Last-Modified': st.mtime.toUTCString(),
      ETag: `"${st.ino.toString(16)}-${size.toString(16)}-${Math.floor(st.mtimeMs).toString(16)}"`,
      'Cache-Control': 'no-store',
    };
    const range = /^bytes=(\d*)-(\d*)$/.exec(req.headers.range ?? '');
    if (range && (range[1] !== '' || range[2] !== '')) {
      let start;
      let end;
      if (range[1] === '') {
        start = Math.max(0, size - Number(range[2]));
        end = size - 1;
      } else {
        start = Number(range[1]);
        end = range[2] === '' ? size - 1 : Math.min(size - 1, Number(range[2]));
      }
      if (start >= size || end < start) {
        res.writeHead(416, { ...common, 'Content-Range': `bytes */${size}` }).end();
        return;
      }
      res.writeHead(206, {
        ...common,
        'Content-Range': `bytes ${start}-${end}/${size}`,
        'Content-Length': end - start + 1,
      });
      if (req.method === 'HEAD') res.end();
      else createReadStream(route, { start, end }).pipe(res);
      return;
    }
    res.writeHead(200, { ...common, 'Content-Length': size });
    if (req.method === 'HEAD') res.end();
    else createReadStream(route).pipe(res);
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => {
      const { port: bound } = server.address();
      resolve({
        server,
        origin: `http://127.0.0.1:${bound}`,
        requests,
        close: () => new Promise((r) => server.close(() => r(undefined))),
      });
    });
  });
}
