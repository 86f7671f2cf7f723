// A delaying HTTP proxy for bench/groups/http.mjs: every request waits DELAY ms, then goes to TARGET
// (keep-alive), and the answer streams back. Prints "listening PORT" and counts requests (GET /__count).
import * as http from 'node:http';

const [target, delay] = [new URL(process.argv[2]), Number(process.argv[3])];
const agent = new http.Agent({ keepAlive: true, maxSockets: 64 });
let count = 0;
const server = http.createServer((req, res) => {
  if (req.url === '/__count') return res.end(String(count));
  count++;
  setTimeout(() => {
    const up = http.request(
      { host: target.hostname, port: target.port, path: req.url, method: req.method, headers: req.headers, agent },
      (r) => {
        res.writeHead(r.statusCode ?? 502, r.headers);
        r.pipe(res);
      },
    );
    up.on('error', () => res.destroy());
    req.pipe(up);
  }, delay);
});
server.keepAliveTimeout = 60_000;
server.listen(0, '127.0.0.1', () => console.log(`listening ${server.address().port}`));
