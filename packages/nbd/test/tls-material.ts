/**
 * Test TLS material made with GnuTLS's certtool and psktool (gnutls-bin), laid out as QEMU's
 * tls-creds-x509 / tls-creds-psk directories and libnbd's tls-certificates directory:
 *
 *   server/   ca-cert.pem server-cert.pem server-key.pem      (blk serve --object ...,endpoint=server)
 *   client/   ca-cert.pem client-cert.pem client-key.pem      (qemu endpoint=client, nbdinfo tls-certificates=)
 *   nocert/   ca-cert.pem                                      (a client without a certificate)
 *   other/    ca-cert.pem client-cert.pem client-key.pem       (a client of another CA, trusting only that CA)
 *   psk/      keys.psk (alice)                                  (tls-creds-psk dir=; nbdinfo tls-psk-file=)
 *   wrong-psk/keys.psk (alice, another key)   bob-psk/keys.psk (bob)
 *
 * Keys are ECDSA P-256 (fast to make). The server certificate names localhost and 127.0.0.1.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

export interface TlsMaterial {
  dir: string;
  server: string;
  client: string;
  nocert: string;
  other: string;
  psk: string;
  wrongPsk: string;
  bobPsk: string;
  /** The client certificate's subject as GnuTLS prints it (what --tls-authz matches). */
  clientDn: string;
}

function have(cmd: string): boolean {
  return spawnSync(cmd, ['--version'], { stdio: 'ignore' }).status === 0;
}

/** Why the material cannot be made here, or undefined when it can. */
export function tlsToolsMissing(): string | undefined {
  const missing = ['certtool', 'psktool'].filter((c) => !have(c));
  return missing.length ? `${missing.join(' and ')} not installed (apt-get install gnutls-bin)` : undefined;
}

function run(cmd: string, args: string[]): string {
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
}

function key(file: string): void {
  run('certtool', ['--generate-privkey', '--key-type=ecdsa', '--curve=secp256r1', '--no-text', '--outfile', file]);
}

function template(dir: string, name: string, lines: string[]): string {
  const f = path.join(dir, `${name}.info`);
  fs.writeFileSync(f, `${lines.join('\n')}\n`);
  return f;
}

function ca(dir: string, cn: string): { cert: string; key: string } {
  const k = path.join(dir, `${cn}-key.pem`);
  const c = path.join(dir, `${cn}-cert.pem`);
  key(k);
  const t = template(dir, cn, [`cn = ${cn}`, 'ca', 'cert_signing_key', 'expiration_days = 2']);
  run('certtool', ['--generate-self-signed', '--load-privkey', k, '--template', t, '--outfile', c]);
  return { cert: c, key: k };
}

function issue(dir: string, signer: { cert: string; key: string }, name: string, lines: string[]) {
  const k = path.join(dir, `${name}-key.pem`);
  const c = path.join(dir, `${name}-cert.pem`);
  key(k);
  const t = template(dir, name, [...lines, 'encryption_key', 'signing_key', 'expiration_days = 2']);
  run('certtool', [
    '--generate-certificate',
    '--load-ca-certificate',
    signer.cert,
    '--load-ca-privkey',
    signer.key,
    '--load-privkey',
    k,
    '--template',
    t,
    '--outfile',
    c,
  ]);
  return { cert: c, key: k };
}

/** Makes a fresh set under a temporary directory. */
export function makeTlsMaterial(): TlsMaterial {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'blk-tls-'));
  const work = path.join(dir, 'work');
  fs.mkdirSync(work);
  const mk = (name: string, files: Record<string, string>) => {
    const d = path.join(dir, name);
    fs.mkdirSync(d);
    for (const [to, from] of Object.entries(files)) fs.copyFileSync(from, path.join(d, to));
    return d;
  };
  const ca1 = ca(work, 'blk-test-ca');
  const srv = issue(work, ca1, 'server', [
    'organization = blk test',
    'cn = localhost',
    'dns_name = localhost',
    'ip_address = 127.0.0.1',
    'tls_www_server',
  ]);
  const cli = issue(work, ca1, 'client', [
    'country = GB',
    'state = London',
    'locality = London',
    'organization = Example, Org',
    'cn = laptop.example.com',
    'tls_www_client',
  ]);
  const ca2 = ca(work, 'other-ca');
  const oth = issue(work, ca2, 'other-client', ['cn = intruder.example.com', 'tls_www_client']);
  const server = mk('server', { 'ca-cert.pem': ca1.cert, 'server-cert.pem': srv.cert, 'server-key.pem': srv.key });
  const client = mk('client', { 'ca-cert.pem': ca1.cert, 'client-cert.pem': cli.cert, 'client-key.pem': cli.key });
  const nocert = mk('nocert', { 'ca-cert.pem': ca1.cert });
  // Trusts the server's CA (so only the server's check of the client can fail) but holds another CA's cert.
  const other = mk('other', { 'ca-cert.pem': ca1.cert, 'client-cert.pem': oth.cert, 'client-key.pem': oth.key });
  const psk = path.join(dir, 'psk');
  const wrongPsk = path.join(dir, 'wrong-psk');
  const bobPsk = path.join(dir, 'bob-psk');
  for (const [d, user] of [
    [psk, 'alice'],
    [wrongPsk, 'alice'],
    [bobPsk, 'bob'],
  ] as const) {
    fs.mkdirSync(d);
    run('psktool', ['-u', user, '-p', path.join(d, 'keys.psk')]);
  }
  const subject = run('certtool', ['-i', '--infile', cli.cert]).match(/\tSubject: (.*)\n/);
  if (!subject) throw new Error('certtool -i printed no Subject');
  return { dir, server, client, nocert, other, psk, wrongPsk, bobPsk, clientDn: subject[1]! };
}
