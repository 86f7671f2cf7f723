/**
 * Interop with a real HTTP server: Debian's nginx-light, started here with a
 * temporary configuration on a free loopback port, serving a temporary
 * directory. The built blk CLI reads a cow over raw chain from it.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { pattern, sameBytes } from './server.js';

const CLI = fileURLToPath(new URL('../../cli/dist/blk.js', import.meta.url));
const NGINX = ['/usr/sbin/nginx', '/usr/local/sbin/nginx'].find((p) => fs.existsSync(p));
const MISSING = 'nginx is not installed (apt-get install nginx-light, or bash scripts/bootstrap.sh --peers)';

let dir = '';
let www = '';
let nginx: ChildProcess | undefined;
let origin = '';

function blk(args: string[], cwd = www) {
  const r = spawnSync(process.execPath, [CLI, ...args], { cwd, encoding: 'utf8', timeout: 60_000 });
  return { status: r.status, out: r.stdout, err: r.stderr };
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as net.AddressInfo;
      s.close(() => resolve(port));
    });
  });
}

async function waitUp(url: string, child: ChildProcess): Promise<void> {
  for (let i = 0; i < 100; i++) {
    if (child.exitCode !== null)
      throw new Error(`nginx exited ${child.exitCode}: ${fs.readFileSync(path.join(dir, 'error.log'), 'utf8')}`);
    try {
      await fetch(url, { method: 'HEAD' });
      return;
    } catch {
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  throw new Error('nginx did not answer');
}

beforeAll(async () => {
  if (!NGINX) return;
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'blk-nginx-'));
  www = path.join(dir, 'www');
  fs.mkdirSync(www);
  const port = await freePort();
  const temp = (name: string) => `${name} ${path.join(dir, name.replace('_path', ''))};`;
  fs.writeFileSync(
    path.join(dir, 'nginx.conf'),
    [
      'daemon off;',
      'master_process off;',
      'worker_processes 1;',
      `pid ${path.join(dir, 'nginx.pid')};`,
      `error_log ${path.join(dir, 'error.log')} warn;`,
      'events { worker_connections 64; }',
      'http {',
      `  access_log ${path.join(dir, 'access.log')};`,
      `  ${temp('client_body_temp_path')} ${temp('proxy_temp_path')} ${temp('fastcgi_temp_path')}`,
      `  ${temp('uwsgi_temp_path')} ${temp('scgi_temp_path')}`,
      '  default_type application/octet-stream;',
      `  server { listen 127.0.0.1:${port}; root ${www}; }`,
      '}',
    ].join('\n'),
  );
  nginx = spawn(NGINX, ['-p', dir, '-c', path.join(dir, 'nginx.conf'), '-e', path.join(dir, 'error.log')], {
    stdio: 'ignore',
  });
  origin = `http://127.0.0.1:${port}`;
  await waitUp(`${origin}/`, nginx);
});

afterAll(async () => {
  if (nginx && nginx.exitCode === null) {
    const done = new Promise((r) => nginx!.once('exit', r));
    nginx.kill('SIGTERM');
    await done;
  }
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

describe('blk over HTTP from nginx', () => {
  it('info, map, compare and convert -O raw of a cow over raw chain give the local bytes', (ctx) => {
    if (!NGINX) ctx.skip(MISSING);
    const size = 8 * 1024 * 1024;
    fs.writeFileSync(path.join(www, 'base.raw'), pattern(size, 21));
    expect(blk(['create', '-f', 'cow', '-b', 'base.raw', '-F', 'raw', 'chain.cow']).status).toBe(0);
    const w = blk(['io', '-c', 'write -P 0x5a 1M 300k', '-c', 'write -P 0x11 7M 4k', 'chain.cow']);
    expect(w.status, w.err).toBe(0);
    expect(blk(['convert', '-O', 'raw', 'chain.cow', path.join(dir, 'local.raw')]).status).toBe(0);
    const url = `${origin}/chain.cow`;

    // blk create stored the absolute local path of base.raw: served remotely, that names a path on the
    // server (missing there), never the local file.
    const absolute = blk(['convert', '-O', 'raw', url, path.join(dir, 'no.raw')]);
    expect(absolute.status).not.toBe(0);
    expect(absolute.err).toContain(`backing file ${origin}${path.join(www, 'base.raw')} not found`);
    // A relative name (cow v3: the backing path at offset 32, 4096 bytes) resolves against the image's URL.
    const cow = fs.readFileSync(path.join(www, 'chain.cow'));
    cow.fill(0, 32, 32 + 4096);
    cow.write('base.raw', 32);
    fs.writeFileSync(path.join(www, 'chain.cow'), cow);

    const info = blk(['info', url]);
    expect(info.status, info.err).toBe(0);
    expect(info.out).toContain('file format: cow');
    expect(info.out).toContain('virtual size: 8 MiB');
    expect(info.out).toContain('base.raw');

    const remoteMap = blk(['map', '--output=json', url]);
    expect(remoteMap.status, remoteMap.err).toBe(0);
    const localMap = blk(['map', '--output=json', 'chain.cow']);
    expect(localMap.status, localMap.err).toBe(0);
    expect(JSON.parse(remoteMap.out)).toEqual(JSON.parse(localMap.out));

    const cmp = blk(['compare', url, path.join(dir, 'local.raw')]);
    expect(cmp.status, cmp.out + cmp.err).toBe(0);

    const out = path.join(dir, 'out.raw');
    const conv = blk(['convert', '-O', 'raw', url, out]);
    expect(conv.status, conv.err).toBe(0);
    expect(sameBytes(fs.readFileSync(out), fs.readFileSync(path.join(dir, 'local.raw')))).toBe(true);
    // Ranged GETs only: nginx logged 206s, never a whole 200 download.
    const log = fs.readFileSync(path.join(dir, 'access.log'), 'utf8');
    expect(log).toMatch(/"GET \/chain\.cow HTTP\/1\.1" 206/);
    expect(log).not.toMatch(/"GET \/(chain\.cow|base\.raw) HTTP\/1\.1" 200/);
  });

  it('fails with a typed error for a missing URL', (ctx) => {
    if (!NGINX) ctx.skip(MISSING);
    const r = blk(['info', `${origin}/nope.cow`]);
    expect(r.status).not.toBe(0);
    expect(r.err).toContain('nope.cow');
  });
});
