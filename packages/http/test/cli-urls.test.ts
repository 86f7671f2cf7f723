/**
 * The blk command with http://, https:// and s3:// sources (spawned, built
 * bin): info, map, convert, compare, check, io -r and serve over the
 * in-process misbehaving server, nginx and s3rver; the same chain read
 * locally, over HTTP and over S3 gives the same bytes and the same map; an
 * overlay over a remote base (create -b URL) is made and reopened; writes
 * to a URL are refused.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFile, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { TestServer, pattern } from './server.js';
import { ACCESS_KEY, BUCKET, S3Server, SECRET_KEY } from './s3rver.js';
import { NGINX, NGINX_MISSING, Nginx } from './nginx-server.js';

const CLI = fileURLToPath(new URL('../../cli/dist/blk.js', import.meta.url));
const SIZE = 8 * 1024 * 1024;
const BASE = pattern(SIZE, 31);
const have = (cmd: string) => ['/usr/bin', '/usr/local/bin'].some((d) => fs.existsSync(path.join(d, cmd)));

let dir = '';
let www = '';
let server: TestServer;
let s3: S3Server;
let nginx: Nginx | undefined;
let s3env: Record<string, string> = {};
let localDigest = '';
let localMap: unknown;

interface Run {
  code: number;
  out: string;
  err: string;
}

/** Runs blk without blocking this process (the servers live in it). */
function blk(args: string[], env: Record<string, string> = {}): Promise<Run> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [CLI, ...args],
      { cwd: www, encoding: 'utf8', env: { ...process.env, ...env }, timeout: 60_000, maxBuffer: 64 << 20 },
      (err, out, errOut) => {
        const code = err
          ? typeof (err as { code?: unknown }).code === 'number'
            ? (err as { code: number }).code
            : -1
          : 0;
        resolve({ code, out, err: errOut });
      },
    );
  });
}

const sha = (file: string) => createHash('sha256').update(fs.readFileSync(file)).digest('hex');
const httpDate = (ms: number) => new Date(ms).toUTCString();

/** Sets a cow (v3) file's backing name (offset 32, 4096 bytes). */
function setBackingName(file: string, name: string): void {
  const cow = fs.readFileSync(file);
  cow.fill(0, 32, 32 + 4096);
  cow.write(name, 32);
  fs.writeFileSync(file, cow);
}

beforeAll(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'blk-cli-urls-'));
  www = path.join(dir, 'www');
  fs.mkdirSync(www);
  server = await new TestServer().start();
  s3 = await new S3Server().start();
  s3env = {
    AWS_ACCESS_KEY_ID: ACCESS_KEY,
    AWS_SECRET_ACCESS_KEY: SECRET_KEY,
    AWS_ENDPOINT_URL: s3.endpoint,
    AWS_REGION: 'us-east-1',
  };
  // base.raw on S3 first: its Last-Modified becomes the local file's mtime, which the cow records.
  const basePath = path.join(www, 'base.raw');
  fs.writeFileSync(basePath, BASE);
  await s3.put('img/base.raw', BASE);
  const head = await fetch(`${s3.endpoint}/${BUCKET}/img/base.raw`, { method: 'HEAD' });
  const modified = Date.parse(head.headers.get('last-modified') ?? '');
  fs.utimesSync(basePath, modified / 1000, modified / 1000);
  const mk = await blk(['create', '-f', 'cow', '-b', 'base.raw', '-F', 'raw', 'chain.cow']);
  expect(mk.code, mk.err).toBe(0);
  const w = await blk(['io', '-c', 'write -P 0x5a 1M 300k', '-c', 'write -P 0x11 7M 4k', 'chain.cow']);
  expect(w.code, w.err).toBe(0);
  setBackingName(path.join(www, 'chain.cow'), 'base.raw'); // relative: resolved against the image's URL
  const chain = fs.readFileSync(path.join(www, 'chain.cow'));
  await s3.put('img/chain.cow', chain);
  server.put('/img/base.raw', BASE, '"base"', httpDate(modified));
  server.put('/img/chain.cow', chain, '"chain"');
  const conv = await blk(['convert', '-O', 'raw', 'chain.cow', path.join(dir, 'local.raw')]);
  expect(conv.code, conv.err).toBe(0);
  localDigest = sha(path.join(dir, 'local.raw'));
  const map = await blk(['map', '--output=json', 'chain.cow']);
  expect(map.code, map.err).toBe(0);
  localMap = JSON.parse(map.out);
  if (NGINX) nginx = await new Nginx(www).start();
}, 60_000);

afterAll(async () => {
  await server?.stop();
  await s3?.stop();
  await nginx?.stop();
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

interface Source {
  name: string;
  url: () => string;
  env: () => Record<string, string>;
  skip?: () => string | undefined;
}

const SOURCES: Source[] = [
  { name: 'http (in-process server)', url: () => server.url('/img/chain.cow'), env: () => ({}) },
  {
    name: 'http (nginx)',
    url: () => `${nginx!.origin}/chain.cow`,
    env: () => ({}),
    skip: () => (NGINX ? undefined : NGINX_MISSING),
  },
  { name: 's3 (s3rver)', url: () => `s3://${BUCKET}/img/chain.cow`, env: () => s3env },
];

describe.each(SOURCES)('blk with a $name source', (source) => {
  it('info, map, convert -O raw, compare, check and io -r: the local results', async (ctx) => {
    const why = source.skip?.();
    if (why) ctx.skip(why);
    const url = source.url();
    const env = source.env();
    const info = await blk(['info', url], env);
    expect(info.code, info.err).toBe(0);
    expect(info.out).toContain('file format: cow');
    expect(info.out).toContain('virtual size: 8 MiB');

    const map = await blk(['map', '--output=json', url], env);
    expect(map.code, map.err).toBe(0);
    expect(JSON.parse(map.out)).toEqual(localMap);

    const out = path.join(dir, `out-${ctx.task.id}.raw`);
    const conv = await blk(['convert', '-O', 'raw', url, out], env);
    expect(conv.code, conv.err).toBe(0);
    expect(sha(out)).toBe(localDigest);

    const cmp = await blk(['compare', url, path.join(dir, 'local.raw')], env);
    expect(cmp.code, cmp.out + cmp.err).toBe(0);
    expect(cmp.out).toContain('Images are identical');
    const differ = await blk(['compare', url, path.join(www, 'base.raw')], env);
    expect(differ.code).toBe(1);

    const check = await blk(['check', url], env);
    expect(check.code, check.out + check.err).toBe(0);

    const io = await blk(['io', '-r', '-c', 'read -P 0x5a 1M 300k', '-c', 'read -P 0x11 7M 4k', url], env);
    expect(io.code, io.err).toBe(0);
    expect(io.out).not.toMatch(/Pattern verification failed/);
    const bad = await blk(['io', '-r', '-c', 'read -P 0x5a 0 4k', url], env);
    expect(bad.out + bad.err).toMatch(/Pattern verification failed/);
  }, 60_000);

  it.skipIf(!have('qemu-img'))(
    'serve -r: an NBD export qemu-img reads as the local bytes',
    async (ctx) => {
      const why = source.skip?.();
      if (why) ctx.skip(why);
      const sock = path.join(dir, `nbd-${ctx.task.id}.sock`);
      const pid = path.join(dir, `nbd-${ctx.task.id}.pid`);
      const child = spawn(process.execPath, [CLI, 'serve', '-r', '-k', sock, '--pid-file', pid, source.url()], {
        cwd: www,
        env: { ...process.env, ...source.env() },
        stdio: ['ignore', 'ignore', 'pipe'],
      });
      let stderr = '';
      child.stderr.on('data', (c: Buffer) => {
        stderr += c.toString();
      });
      const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
      try {
        for (let i = 0; i < 200 && !fs.existsSync(pid); i++) {
          if (child.exitCode !== null) break;
          await new Promise((r) => setTimeout(r, 50));
        }
        expect(fs.existsSync(pid), stderr).toBe(true);
        const out = path.join(dir, `nbd-${ctx.task.id}.raw`);
        const r = await new Promise<{ code: number | null; err: string }>((resolve) => {
          execFile(
            'qemu-img',
            ['convert', '-f', 'raw', '-O', 'raw', `nbd+unix:///?socket=${sock}`, out],
            (e, _o, err) => resolve({ code: e ? 1 : 0, err }),
          );
        });
        expect(r.code, r.err).toBe(0);
        expect(sha(out)).toBe(localDigest);
        expect(await exited).toBe(0); // the last client left
      } finally {
        if (child.exitCode === null) child.kill('SIGTERM');
      }
    },
    60_000,
  );
});

describe('blk and remote images', () => {
  it('create -b URL: a local overlay over a remote base, written and reopened later', async () => {
    const base = server.url('/img/base.raw');
    const mk = await blk(['create', '-f', 'cow', '-b', base, '-F', 'raw', 'over.cow']);
    expect(mk.code, mk.err).toBe(0);
    const w = await blk(['io', '-c', 'write -P 0x77 2M 64k', 'over.cow']);
    expect(w.code, w.err).toBe(0);
    const info = await blk(['info', 'over.cow']);
    expect(info.code, info.err).toBe(0);
    expect(info.out).toContain(`backing file: ${base}`);
    const r = await blk(['io', '-r', '-c', 'read -P 0x77 2M 64k', 'over.cow']);
    expect(r.code, r.err).toBe(0);
    expect(r.out).not.toMatch(/Pattern verification failed/);
    const out = path.join(dir, 'over.raw');
    const conv = await blk(['convert', '-O', 'raw', 'over.cow', out]);
    expect(conv.code, conv.err).toBe(0);
    const want = BASE.slice();
    want.fill(0x77, 2 << 20, (2 << 20) + 65536);
    expect(Buffer.compare(fs.readFileSync(out), want)).toBe(0);
  });

  it('writes to a URL are refused with a clear error', async () => {
    const url = server.url('/img/chain.cow');
    const io = await blk(['io', '-c', 'write 0 4k', url]);
    expect(io.code).not.toBe(0);
    expect(io.err).toMatch(/read-only/i);
    const conv = await blk(['convert', '-O', 'raw', path.join(dir, 'local.raw'), server.url('/img/new.raw')]);
    expect(conv.code).not.toBe(0);
    expect(conv.err).toMatch(/read-only/i);
    const mk = await blk(['create', '-f', 'cow', server.url('/img/new.cow'), '1M']);
    expect(mk.code).not.toBe(0);
    expect(mk.err).toMatch(/read-only/i);
    const s3w = await blk(['io', '-c', 'write 0 4k', `s3://${BUCKET}/img/chain.cow`], s3env);
    expect(s3w.code).not.toBe(0);
    expect(s3w.err).toMatch(/read-only/i);
  });

  it('a server that ignores ranges, or a wrong S3 secret: a typed error, no output', async () => {
    server.knobs.ignoreRange = true;
    const r = await blk(['info', server.url('/img/chain.cow')]);
    server.reset();
    expect(r.code).not.toBe(0);
    expect(r.err).toMatch(/ignores byte ranges/);
    const s = await blk(['info', `s3://${BUCKET}/img/chain.cow`], { ...s3env, AWS_SECRET_ACCESS_KEY: 'wrong' });
    expect(s.code).not.toBe(0);
    expect(s.err).toContain(`s3://${BUCKET}/img/chain.cow: access denied (HTTP 403: SignatureDoesNotMatch)`);
  });
});
