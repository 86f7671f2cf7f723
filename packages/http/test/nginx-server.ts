/**
 * Debian's nginx(-light) for tests and benches: started on a free loopback port with a temporary
 * configuration serving `www`, stopped by `stop()`. `NGINX` is undefined when it is not installed.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';

export const NGINX = ['/usr/sbin/nginx', '/usr/local/sbin/nginx'].find((p) => fs.existsSync(p));
export const NGINX_MISSING =
  'nginx is not installed (apt-get install nginx-light, or bash scripts/bootstrap.sh --peers)';

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as net.AddressInfo;
      s.close(() => resolve(port));
    });
  });
}

export class Nginx {
  origin = '';
  private dir = '';
  private child: ChildProcess | undefined;

  constructor(readonly www: string) {}

  /** The access log so far. */
  log(): string {
    return fs.readFileSync(path.join(this.dir, 'access.log'), 'utf8');
  }

  async start(): Promise<this> {
    if (!NGINX) throw new Error(NGINX_MISSING);
    this.dir = fs.mkdtempSync(path.join(os.tmpdir(), 'blk-nginx-'));
    const port = await freePort();
    const temp = (name: string) => `${name} ${path.join(this.dir, name.replace('_path', ''))};`;
    fs.writeFileSync(
      path.join(this.dir, 'nginx.conf'),
      [
        'daemon off;',
        'master_process off;',
        'worker_processes 1;',
        `pid ${path.join(this.dir, 'nginx.pid')};`,
        `error_log ${path.join(this.dir, 'error.log')} warn;`,
        'events { worker_connections 256; }',
        'http {',
        `  access_log ${path.join(this.dir, 'access.log')};`,
        `  ${temp('client_body_temp_path')} ${temp('proxy_temp_path')} ${temp('fastcgi_temp_path')}`,
        `  ${temp('uwsgi_temp_path')} ${temp('scgi_temp_path')}`,
        '  default_type application/octet-stream;',
        '  sendfile on; keepalive_requests 100000;',
        `  server { listen 127.0.0.1:${port}; root ${this.www}; }`,
        '}',
      ].join('\n'),
    );
    this.child = spawn(
      NGINX,
      ['-p', this.dir, '-c', path.join(this.dir, 'nginx.conf'), '-e', path.join(this.dir, 'error.log')],
      {
        stdio: 'ignore',
      },
    );
    this.origin = `http://127.0.0.1:${port}`;
    for (let i = 0; i < 100; i++) {
      if (this.child.exitCode !== null) {
        throw new Error(
          `nginx exited ${this.child.exitCode}: ${fs.readFileSync(path.join(this.dir, 'error.log'), 'utf8')}`,
        );
      }
      try {
        await fetch(`${this.origin}/`, { method: 'HEAD' });
        return this;
      } catch {
        await new Promise((r) => setTimeout(r, 50));
      }
    }
    throw new Error('nginx did not answer');
  }

  async stop(): Promise<void> {
    const child = this.child;
    if (child && child.exitCode === null) {
      const done = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      await done;
    }
    if (this.dir) fs.rmSync(this.dir, { recursive: true, force: true });
  }
}
