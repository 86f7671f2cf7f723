/**
 * Hostile or unusual servers: a size near 2^53 or past the bound is refused
 * before anything is allocated; HTTPS with a certificate from a private CA
 * (made here with GnuTLS's certtool) is refused by default with a clear
 * error, and read with the CA given (library: tlsFetch; blk:
 * NODE_EXTRA_CA_CERTS).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFile, execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { BlockError } from '@blk/core';
import { DEFAULT_MAX_SIZE, HttpStorage } from '@blk/http';
import { nodeTransport, tlsFetch } from '@blk/http/node';
import { TestServer, pattern, sameBytes } from './server.js';

const CLI = fileURLToPath(new URL('../../cli/dist/blk.js', import.meta.url));
const CERTTOOL = ['/usr/bin/certtool', '/usr/local/bin/certtool'].find((p) => fs.existsSync(p));
const DATA = pattern(256 * 1024, 5);

describe('announced sizes', () => {
  let server: TestServer;
  beforeAll(async () => {
    server = await new TestServer().start();
    server.put('/d.img', DATA);
  });
  afterAll(() => server.stop());

  it.each([
    ['2^53 + 2 (not a safe integer)', '9007199254740994'],
    ['2^53 - 1 (past the default bound)', '9007199254740991'],
    ['a 30-digit size', '123456789012345678901234567890'],
    ['2^50 + 1', String(2 ** 50 + 1)],
  ])('%s: invalid-header naming Content-Range, after one request', async (_what, size) => {
    server.reset();
    server.knobs.announceSize = size;
    const err = await HttpStorage.open(server.url('/d.img'), { blockSize: 4096 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BlockError);
    expect(err).toMatchObject({ kind: 'invalid-header', field: 'Content-Range', path: server.url('/d.img') });
    expect((err as Error).message).toContain(`more than the ${DEFAULT_MAX_SIZE} accepted`);
    expect(server.requests()).toBe(1);
  });

  it('a bound of the caller’s: smaller refuses the real size, larger accepts a huge one', async () => {
    server.reset();
    await expect(HttpStorage.open(server.url('/d.img'), { maxSize: 1000 })).rejects.toMatchObject({
      kind: 'invalid-header',
    });
    server.knobs.announceSize = String(2 ** 50 + 1);
    const s = await HttpStorage.open(server.url('/d.img'), { blockSize: 4096, maxSize: 2 ** 51 });
    expect(await s.size()).toBe(2 ** 50 + 1);
    const into = new Uint8Array(100);
    await s.read(0, into); // the first block came with the open
    expect(sameBytes(into, DATA.subarray(0, 100))).toBe(true);
    await expect(HttpStorage.open(server.url('/d.img'), { maxSize: 2 ** 53 })).rejects.toMatchObject({
      kind: 'invalid-argument',
      field: 'maxSize',
    });
  });
});

describe.skipIf(!CERTTOOL)('HTTPS with a private CA (certtool)', () => {
  let dir = '';
  let server: TestServer;
  let ca = '';
  beforeAll(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'blk-tls-'));
    const f = (name: string) => path.join(dir, name);
    const run = (...args: string[]) => execFileSync(CERTTOOL!, args, { stdio: 'pipe' });
    fs.writeFileSync(f('ca.tmpl'), 'cn = blk test CA\nca\ncert_signing_key\nexpiration_days = 2\n');
    fs.writeFileSync(
      f('srv.tmpl'),
      'cn = 127.0.0.1\nip_address = 127.0.0.1\ndns_name = localhost\ntls_www_server\nsigning_key\nencryption_key\nexpiration_days = 2\n',
    );
    run('--generate-privkey', '--key-type=ecdsa', '--outfile', f('ca.key'));
    run('--generate-self-signed', '--load-privkey', f('ca.key'), '--template', f('ca.tmpl'), '--outfile', f('ca.pem'));
    run('--generate-privkey', '--key-type=ecdsa', '--outfile', f('srv.key'));
    run(
      '--generate-certificate',
      '--load-privkey',
      f('srv.key'),
      '--load-ca-certificate',
      f('ca.pem'),
      '--load-ca-privkey',
      f('ca.key'),
      '--template',
      f('srv.tmpl'),
      '--outfile',
      f('srv.pem'),
    );
    run('--generate-privkey', '--key-type=ecdsa', '--outfile', f('ca2.key'));
    run(
      '--generate-self-signed',
      '--load-privkey',
      f('ca2.key'),
      '--template',
      f('ca.tmpl'),
      '--outfile',
      f('ca2.pem'),
    );
    ca = fs.readFileSync(f('ca.pem'), 'utf8');
    server = await new TestServer().start('127.0.0.1', {
      key: fs.readFileSync(f('srv.key'), 'utf8'),
      cert: fs.readFileSync(f('srv.pem'), 'utf8'),
    });
    server.put('/d.img', DATA);
  });
  afterAll(async () => {
    await server?.stop();
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  it('refused by default: io EPROTO naming the certificate problem, not retried', async () => {
    server.reset();
    const err = await HttpStorage.open(server.url('/d.img'), { retryDelay: 1 }).catch((e: unknown) => e);
    expect(err).toMatchObject({ kind: 'io', code: 'EPROTO' });
    expect((err as Error).message).toMatch(/certificate is not trusted \((SELF_SIGNED_CERT_IN_CHAIN|UNABLE_TO_\w+)\)/);
    expect(server.requests()).toBe(0); // the handshake failed: no request reached the server
  });

  it('read with the CA given to tlsFetch', async () => {
    const s = await HttpStorage.open(server.url('/d.img'), { blockSize: 4096, fetch: tlsFetch({ ca }) });
    const into = new Uint8Array(DATA.length);
    expect(await s.read(0, into)).toBe(DATA.length);
    expect(sameBytes(into, DATA)).toBe(true);
    // Another CA (same name, other key) does not do.
    const other = await HttpStorage.open(server.url('/d.img'), {
      fetch: tlsFetch({ ca: fs.readFileSync(path.join(dir, 'ca2.pem'), 'utf8') }),
    }).catch((e: unknown) => e);
    expect(other).toMatchObject({ kind: 'io', code: 'EPROTO' });
  });

  it('read with the CA given to nodeTransport, and refused (EPROTO) without it or with another', async () => {
    const s = await HttpStorage.open(server.url('/d.img'), { blockSize: 4096, transport: nodeTransport({ ca }) });
    const into = new Uint8Array(DATA.length);
    expect(await s.read(0, into)).toBe(DATA.length);
    expect(sameBytes(into, DATA)).toBe(true);
    for (const transport of [
      nodeTransport(),
      nodeTransport({ ca: fs.readFileSync(path.join(dir, 'ca2.pem'), 'utf8') }),
    ]) {
      const err = await HttpStorage.open(server.url('/d.img'), { transport, retryDelay: 1 }).catch((e: unknown) => e);
      expect(err).toMatchObject({ kind: 'io', code: 'EPROTO' });
    }
  });

  it('blk: refused without the CA, read with NODE_EXTRA_CA_CERTS', async () => {
    const blk = (env: Record<string, string>) =>
      new Promise<{ code: number; out: string; err: string }>((resolve) => {
        execFile(
          process.execPath,
          [CLI, 'info', server.url('/d.img')],
          { encoding: 'utf8', env: { ...process.env, ...env }, timeout: 60_000 },
          (e, out, err) => resolve({ code: e ? 1 : 0, out, err }),
        );
      });
    const refused = await blk({});
    expect(refused.code).toBe(1);
    expect(refused.err).toContain("TLS: the server's certificate is not trusted");
    const ok = await blk({ NODE_EXTRA_CA_CERTS: path.join(dir, 'ca.pem') });
    expect(ok.code, ok.err).toBe(0);
    expect(ok.out).toContain('virtual size: 256 KiB');
  });
});
