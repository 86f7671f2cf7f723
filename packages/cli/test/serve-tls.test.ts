/**
 * blk serve with TLS, against the GnuTLS clients of Debian: qemu-img/qemu-io (`--object
 * tls-creds-x509|tls-creds-psk,...,endpoint=client` + `--image-opts ...,tls-creds=ID`) and nbdinfo
 * (`nbds://`, `nbds+unix://` with `tls-certificates=` / `tls-psk-file=`, `--list`). Certificates and
 * keys are made by certtool/psktool (gnutls-bin) per run; without them the tests skip and say so.
 * Also: plain clients refused cleanly, a client without certificate / of another CA / with a wrong PSK
 * refused and logged, --tls-authz, the nbdkit-style aliases, and bad TLS command lines.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeTlsMaterial, type TlsMaterial, tlsToolsMissing } from '../../nbd/test/tls-material.js';
import { blk, ensureBuilt, hasCommand, rawFile, tempDir, waitFor } from './helpers.js';
import { logged, startServe, tool } from './serve-helpers.js';

const MiB = 1024 * 1024;
const missing =
  tlsToolsMissing()
  ?? (['qemu-img', 'qemu-io', 'nbdinfo'].every(hasCommand) ? undefined : 'qemu-img, qemu-io or nbdinfo missing');
if (missing) console.warn(`serve-tls.test.ts: skipped: ${missing}`);

let m: TlsMaterial;
let dir: string;

beforeAll(() => {
  if (missing) return;
  ensureBuilt();
  m = makeTlsMaterial();
  dir = tempDir('serve-tls');
});

afterAll(() => {
  if (missing) return;
  fs.rmSync(m.dir, { recursive: true, force: true });
});

const x509 = (id: string, d: string, endpoint: 'server' | 'client', extra = '') =>
  `tls-creds-x509,id=${id},dir=${d},endpoint=${endpoint}${extra}`;
const psk = (id: string, d: string, endpoint: 'server' | 'client', extra = '') =>
  `tls-creds-psk,id=${id},dir=${d},endpoint=${endpoint}${extra}`;
const inet = (port: number) => `driver=nbd,server.type=inet,server.host=127.0.0.1,server.port=${port},tls-creds=tls0`;
const unix = (sock: string) => `driver=nbd,server.type=unix,server.path=${sock},tls-creds=tls0`;

describe.skipIf(missing !== undefined).sequential('blk serve with TLS (qemu-img, qemu-io, nbdinfo)', () => {
  it('X.509 via --object/--tls-creds over TCP: qemu-img info/convert, qemu-io, nbdinfo nbds:// and --list; plain and wrong clients are refused', async () => {
    const file = path.join(dir, 'x509.img');
    rawFile(file, 4 * MiB, [
      [0, 64 * 1024, 0x21],
      [3 * MiB, 4096, 0x43],
    ]);
    const s = await startServe(dir, [
      '-f',
      'raw',
      '-t',
      '-e',
      '4',
      '-b',
      '127.0.0.1',
      '-p',
      '0',
      '--object',
      x509('tls0', m.server, 'server'),
      '--tls-creds',
      'tls0',
      file,
    ]);
    const port = s.port!;
    const client = ['--object', x509('tls0', m.client, 'client')];
    try {
      const info = tool('qemu-img', ['info', '--output=json', ...client, '--image-opts', inet(port)]);
      expect(info.code, info.stderr).toBe(0);
      expect(JSON.parse(info.stdout)['virtual-size']).toBe(4 * MiB);
      // The json: filename form, as scripts pass it without --image-opts.
      const json = JSON.stringify({
        driver: 'nbd',
        server: { type: 'inet', host: '127.0.0.1', port: String(port) },
        'tls-creds': 'tls0',
      });
      const info2 = tool('qemu-img', ['info', '--output=json', ...client, `json:${json}`]);
      expect(info2.code, info2.stderr).toBe(0);
      expect(JSON.parse(info2.stdout)['virtual-size']).toBe(4 * MiB);
      const out = path.join(dir, 'x509-copy.raw');
      const conv = tool('qemu-img', ['convert', '-O', 'raw', ...client, '--image-opts', inet(port), out]);
      expect(conv.code, conv.stderr).toBe(0);
      expect(fs.readFileSync(out).equals(fs.readFileSync(file))).toBe(true);
      const io = tool('qemu-io', [
        ...client,
        '--image-opts',
        inet(port),
        '-c',
        'write -P 0x7e 1M 64k',
        '-c',
        'read -P 0x7e 1M 64k',
        '-c',
        'read -P 0x43 3M 4k',
      ]);
      expect(io.code, io.stderr).toBe(0);
      expect(io.stdout).not.toMatch(/failed|Pattern verification/);
      const ni = tool('nbdinfo', [`nbds://127.0.0.1:${port}/?tls-certificates=${m.client}`]);
      expect(ni.code, ni.stderr).toBe(0);
      expect(ni.stdout).toContain('protocol: newstyle-fixed with TLS, using structured packets');
      expect(ni.stdout).toContain('export-size: 4194304');
      const list = tool('nbdinfo', ['--list', `nbds://127.0.0.1:${port}/?tls-certificates=${m.client}`]);
      expect(list.code, list.stderr).toBe(0);
      expect(list.stdout).toContain('export="":');
      // Refused: plain clients (cleanly: an error reply, not a hang), no client certificate, another CA's.
      const plain = tool('nbdinfo', [`nbd://127.0.0.1:${port}/`]);
      expect(plain.code).not.toBe(0);
      expect(plain.stderr).toContain('server replied with error to opt_go request');
      const plainQemu = tool('qemu-img', ['info', `nbd://127.0.0.1:${port}`]);
      expect(plainQemu.code).not.toBe(0);
      expect(plainQemu.stderr).toContain('TLS negotiation required before option');
      const nocert = tool('nbdinfo', [`nbds://127.0.0.1:${port}/?tls-certificates=${m.nocert}`]);
      expect(nocert.code).not.toBe(0);
      // (qemu-img would refuse to load a client certificate its own CA did not issue: nbdinfo sends it.)
      const other = tool('nbdinfo', [`nbds://127.0.0.1:${port}/?tls-certificates=${m.other}`]);
      expect(other.code).not.toBe(0);
      await logged(s, /client \d+: option negotiation failed: TLS handshake failed: the client sent no certificate/);
      // GnuTLS offers only a certificate of a CA the server names, so the other CA's may not even be sent.
      await waitFor(() => s.stderr().match(/TLS handshake failed/g)?.length === 2, 5000, 'two TLS failures logged');
      expect(s.child.exitCode).toBeNull();
    } finally {
      expect(await s.stop()).toEqual({ code: 0, signal: null });
    }
    // qemu-io's write over TLS reached the file.
    const back = blk(['io', '-f', 'raw', '-c', 'read -P 0x7e 1M 64k', '-c', 'read -P 0x21 0 64k', file]);
    expect(back.code, back.stderr).toBe(0);
    expect(back.stdout).not.toMatch(/failed|Pattern verification/);
  });

  it('PSK via --object tls-creds-psk over a Unix socket: nbdinfo nbds+unix with tls-psk-file, qemu-img/qemu-io with username; a wrong key fails', async () => {
    const file = path.join(dir, 'psk.img');
    rawFile(file, 2 * MiB, [[MiB, 8192, 0x5a]]);
    const sock = path.join(dir, 'psk.sock');
    const s = await startServe(dir, [
      '-f',
      'raw',
      '-t',
      '-e',
      '2',
      '-k',
      sock,
      '--object',
      psk('tls0', m.psk, 'server'),
      '--tls-creds',
      'tls0',
      file,
    ]);
    const keys = path.join(m.psk, 'keys.psk');
    try {
      const ni = tool('nbdinfo', [`nbds+unix://alice@/?socket=${sock}&tls-psk-file=${keys}`]);
      expect(ni.code, ni.stderr).toBe(0);
      expect(ni.stdout).toContain('with TLS');
      const list = tool('nbdinfo', ['--list', `nbds+unix://alice@/?socket=${sock}&tls-psk-file=${keys}`]);
      expect(list.code, list.stderr).toBe(0);
      const client = ['--object', psk('tls0', m.psk, 'client', ',username=alice')];
      const info = tool('qemu-img', ['info', '--output=json', ...client, '--image-opts', unix(sock)]);
      expect(info.code, info.stderr).toBe(0);
      expect(JSON.parse(info.stdout)['virtual-size']).toBe(2 * MiB);
      const io = tool('qemu-io', [
        ...client,
        '--image-opts',
        unix(sock),
        '-c',
        'read -P 0x5a 1M 8k',
        '-c',
        'write -P 0x33 0 4k',
      ]);
      expect(io.code, io.stderr).toBe(0);
      expect(io.stdout).not.toMatch(/failed|Pattern verification/);
      const wrong = tool('nbdinfo', [
        `nbds+unix://alice@/?socket=${sock}&tls-psk-file=${path.join(m.wrongPsk, 'keys.psk')}`,
      ]);
      expect(wrong.code).not.toBe(0);
      const wrongQemu = tool('qemu-img', [
        'info',
        '--object',
        psk('tls0', m.wrongPsk, 'client', ',username=alice'),
        '--image-opts',
        unix(sock),
      ]);
      expect(wrongQemu.code).not.toBe(0);
      const bob = tool('qemu-img', [
        'info',
        '--object',
        psk('tls0', m.bobPsk, 'client', ',username=bob'),
        '--image-opts',
        unix(sock),
      ]);
      expect(bob.code).not.toBe(0);
      await waitFor(() => s.stderr().match(/TLS handshake failed/g)?.length === 3, 5000, 'three failures logged');
      if (hasCommand('nbdcopy')) {
        // Pipelined transmission over TLS: nbdcopy keeps many requests in flight on 4 connections, both
        // ways (replies out of order, batched writes through the TLS socket, hole chunks on the way back).
        const uri = `nbds+unix://alice@/?socket=${sock}&tls-psk-file=${keys}`;
        const src = path.join(dir, 'psk-src.img');
        const data = new Uint8Array(2 * MiB);
        for (let i = 0; i < MiB; i++) data[i] = (i * 2654435761) >>> 24;
        data.fill(0x33, 0, 4096);
        fs.writeFileSync(src, data);
        const up = tool('nbdcopy', ['-C', '4', '--requests', '16', '--request-size', '65536', src, uri]);
        expect(up.code, up.stderr).toBe(0);
        const back = path.join(dir, 'psk-back.img');
        const down = tool('nbdcopy', ['-C', '4', '--requests', '16', '--request-size', '65536', uri, back]);
        expect(down.code, down.stderr).toBe(0);
        expect(Buffer.compare(fs.readFileSync(back), Buffer.from(data))).toBe(0);
      } else console.warn('serve-tls.test.ts: nbdcopy missing: pipelined TLS copy skipped');
    } finally {
      expect(await s.stop('SIGINT')).toEqual({ code: 0, signal: null });
    }
    expect(fs.existsSync(sock)).toBe(false);
    expect([...fs.readFileSync(file).subarray(0, 4)]).toEqual([0x33, 0x33, 0x33, 0x33]);
  });

  it('--tls-authz: authz-simple naming the certificate DN admits that client only; authz-listfile rules by glob', async () => {
    const file = path.join(dir, 'authz.img');
    rawFile(file, MiB);
    const sock = path.join(dir, 'authz.sock');
    const client = [
      '--object',
      x509('tls0', m.client, 'client'),
      '--image-opts',
      `${unix(sock)},tls-hostname=localhost`,
    ];
    const serveWith = (authz: string) =>
      startServe(dir, [
        '-r',
        '-t',
        '-k',
        sock,
        '--object',
        x509('tls0', m.server, 'server', ',verify-peer=on'),
        '--object',
        authz,
        '--tls-creds',
        'tls0',
        '--tls-authz',
        'auth0',
        file,
      ]);
    // QEMU's own syntax: commas inside the DN doubled.
    const dn = m.clientDn.replaceAll(',', ',,');
    let s = await serveWith(`authz-simple,id=auth0,identity=${dn}`);
    try {
      const ok = tool('qemu-img', ['info', ...client]);
      expect(ok.code, `${ok.stderr}\n${s.stderr()}`).toBe(0);
    } finally {
      await s.stop();
    }
    s = await serveWith('authz-simple,id=auth0,identity=CN=someone.else');
    try {
      const no = tool('qemu-img', ['info', ...client]);
      expect(no.code).not.toBe(0);
      // (blk's messages print a backslash as \\, so that escapes stay unambiguous.)
      await logged(s, `TLS authorization of ${m.clientDn.replaceAll('\\', '\\\\')} refused`);
    } finally {
      await s.stop();
    }
    const rules = path.join(dir, 'authz.json');
    fs.writeFileSync(
      rules,
      JSON.stringify({
        rules: [
          { match: 'CN=intruder*', policy: 'deny', format: 'glob' },
          // fnmatch: \\ is a literal backslash (GnuTLS escapes the comma inside "Example, Org").
          { match: 'CN=laptop.*,O=Example\\\\, Org,*', policy: 'allow', format: 'glob' },
        ],
        policy: 'deny',
      }),
    );
    s = await serveWith(`authz-listfile,id=auth0,filename=${rules}`);
    try {
      const ok = tool('qemu-img', ['info', ...client]);
      expect(ok.code, `${ok.stderr}\n${s.stderr()}`).toBe(0);
      // Re-read at each connection (refresh=on, QEMU's default): a rule change applies to the next client.
      fs.writeFileSync(rules, JSON.stringify({ rules: [], policy: 'deny' }));
      const no = tool('qemu-img', ['info', ...client]);
      expect(no.code).not.toBe(0);
      await logged(s, "no rule of authz-listfile 'auth0' allows it");
    } finally {
      await s.stop();
    }
  });

  it('nbdkit-style aliases: --tls-certificates DIR (client certificate optional unless --tls-verify-peer) and --tls-psk FILE', async () => {
    const file = path.join(dir, 'alias.img');
    rawFile(file, MiB, [[0, 512, 0x99]]);
    const sock = path.join(dir, 'alias.sock');
    let s = await startServe(dir, ['-r', '-t', '-k', sock, '--tls-certificates', m.server, file]);
    try {
      const ni = tool('nbdinfo', [`nbds+unix:///?socket=${sock}&tls-certificates=${m.nocert}`]);
      expect(ni.code, ni.stderr).toBe(0);
    } finally {
      await s.stop();
    }
    s = await startServe(dir, ['-r', '-t', '-k', sock, '--tls-certificates', m.server, '--tls-verify-peer', file]);
    try {
      expect(tool('nbdinfo', [`nbds+unix:///?socket=${sock}&tls-certificates=${m.nocert}`]).code).not.toBe(0);
      expect(tool('nbdinfo', [`nbds+unix:///?socket=${sock}&tls-certificates=${m.client}`]).code).toBe(0);
    } finally {
      await s.stop();
    }
    s = await startServe(dir, ['-r', '-t', '-k', sock, '--tls-psk', path.join(m.psk, 'keys.psk'), file]);
    try {
      const ni = tool('nbdinfo', [`nbds+unix://alice@/?socket=${sock}&tls-psk-file=${path.join(m.psk, 'keys.psk')}`]);
      expect(ni.code, ni.stderr).toBe(0);
    } finally {
      await s.stop();
    }
  });

  it('refuses bad TLS command lines with one line and exit 1, before listening', () => {
    const file = path.join(dir, 'bad.img');
    rawFile(file, MiB);
    const sock = path.join(dir, 'bad.sock');
    const bad = (args: string[], msg: RegExp) => {
      const r = blk(['serve', '-k', sock, ...args, file]);
      expect(r.code, r.stderr).toBe(1);
      expect(r.stderr.trim().split('\n')).toHaveLength(1);
      expect(r.stderr).toMatch(msg);
      expect(fs.existsSync(sock)).toBe(false);
    };
    bad(['--tls-creds', 'nope'], /--tls-creds nope: no --object with this id/);
    bad(['--object', x509('tls0', m.client, 'client'), '--tls-creds', 'tls0'], /a server needs endpoint=server/);
    bad(['--object', x509('tls0', m.nocert, 'server'), '--tls-creds', 'tls0'], /server-cert.pem: cannot read/);
    bad(
      ['--object', x509('tls0', m.server, 'server', ',colour=red'), '--tls-creds', 'tls0'],
      /unknown property 'colour'/,
    );
    bad(['--object', 'secret,id=s0,data=x'], /unknown object type 'secret'/);
    bad(['--tls-certificates', m.server, '--tls-psk', path.join(m.psk, 'keys.psk')], /give one of/);
    bad(
      ['--object', 'authz-simple,id=a,identity=x', '--tls-certificates', m.server, '--tls-authz', 'a'],
      /needs verify-peer=on/,
    );
    bad(['--object', psk('tls0', m.server, 'server'), '--tls-creds', 'tls0'], /keys.psk: cannot read/);
    bad(
      ['--object', x509('tls0', m.server, 'server', ',verify-peer=maybe'), '--tls-creds', 'tls0'],
      /expected on or off/,
    );
  });
});
