/**
 * TLS for NBD in Node: credentials laid out as QEMU's `tls-creds-x509` / `tls-creds-psk` objects read
 * them, and the STARTTLS upgrade of a connection's socket (Node's `tls`). Node-only (@blk/nbd/node).
 */
import { X509Certificate, createPrivateKey } from 'node:crypto';
import * as fs from 'node:fs';
import type * as net from 'node:net';
import * as path from 'node:path';
import * as tls from 'node:tls';
import type { TlsUpgrade } from './handshake.js';
import type { ByteStream } from './server.js';

/** X.509 credentials: a QEMU `tls-creds-x509,endpoint=server` directory. */
export interface X509Credentials {
  kind: 'x509';
  dir: string;
  /** Ask for and verify a client certificate signed by the CA (QEMU's verify-peer, on by default). */
  verifyPeer: boolean;
  ca: Buffer;
  cert: Buffer;
  key: Buffer;
  crl?: Buffer;
}

/** PSK credentials: identities and keys of a psktool file (QEMU's `tls-creds-psk` reads DIR/keys.psk). */
export interface PskCredentials {
  kind: 'psk';
  file: string;
  keys: ReadonlyMap<string, Buffer>;
}

export type TlsCredentials = X509Credentials | PskCredentials;

/** A credentials problem found at load time (missing file, bad PEM, key not matching its certificate...). */
export class TlsCredentialsError extends Error {
  override readonly name = 'TlsCredentialsError';
}

function readCredentialFile(file: string, what: string, required: true): Buffer;
function readCredentialFile(file: string, what: string, required: false): Buffer | undefined;
function readCredentialFile(file: string, what: string, required: boolean): Buffer | undefined {
  let st: fs.Stats | undefined;
  try {
    st = fs.statSync(file);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT' && !required) return undefined;
    throw new TlsCredentialsError(`${file}: cannot read the ${what}: ${(e as Error).message}`);
  }
  if (!st.isFile()) throw new TlsCredentialsError(`${file}: the ${what} is not a regular file`);
  // Certificates and keys are small; a huge file is a mistake (or a trap), not a credential.
  if (st.size > 1024 * 1024) throw new TlsCredentialsError(`${file}: the ${what} is larger than 1 MiB`);
  return fs.readFileSync(file);
}

/**
 * Loads `dir/ca-cert.pem`, `dir/server-cert.pem`, `dir/server-key.pem` (and `dir/ca-crl.pem` if present),
 * the files QEMU's tls-creds-x509 reads for a server, and checks them as QEMU's sanity check does: the key
 * belongs to the certificate, the CA issued the certificate, and both are within their validity dates.
 */
export function loadX509Credentials(dir: string, options: { verifyPeer?: boolean } = {}): X509Credentials {
  const ca = readCredentialFile(path.join(dir, 'ca-cert.pem'), 'CA certificate', true);
  const cert = readCredentialFile(path.join(dir, 'server-cert.pem'), 'server certificate', true);
  const key = readCredentialFile(path.join(dir, 'server-key.pem'), 'server key', true);
  const crl = readCredentialFile(path.join(dir, 'ca-crl.pem'), 'CA revocation list', false);
  const parse = (b: Buffer, file: string) => {
    try {
      return new X509Certificate(b);
    } catch (e) {
      throw new TlsCredentialsError(`${path.join(dir, file)}: not a PEM certificate (${(e as Error).message})`);
    }
  };
  const caCert = parse(ca, 'ca-cert.pem');
  const serverCert = parse(cert, 'server-cert.pem');
  let privateKey: ReturnType<typeof createPrivateKey>;
  try {
    privateKey = createPrivateKey(key);
  } catch (e) {
    throw new TlsCredentialsError(
      `${path.join(dir, 'server-key.pem')}: not a PEM private key (${(e as Error).message})`,
    );
  }
  if (!serverCert.checkPrivateKey(privateKey)) {
    throw new TlsCredentialsError(`${path.join(dir, 'server-key.pem')}: the key does not match server-cert.pem`);
  }
  if (!serverCert.checkIssued(caCert) || !serverCert.verify(caCert.publicKey)) {
    throw new TlsCredentialsError(`${path.join(dir, 'server-cert.pem')}: not issued by the CA of ca-cert.pem`);
  }
  const now = Date.now();
  for (const [c, file] of [
    [caCert, 'ca-cert.pem'],
    [serverCert, 'server-cert.pem'],
  ] as const) {
    if (Date.parse(c.validTo) < now)
      throw new TlsCredentialsError(`${path.join(dir, file)}: the certificate has expired`);
    if (Date.parse(c.validFrom) > now) {
      throw new TlsCredentialsError(`${path.join(dir, file)}: the certificate is not yet activated`);
    }
  }
  return { kind: 'x509', dir, verifyPeer: options.verifyPeer ?? true, ca, cert, key, crl };
}

/** The identities and keys of a psktool file (`identity:hexkey` per line). */
export function parsePskKeys(text: string, file: string): Map<string, Buffer> {
  const keys = new Map<string, Buffer>();
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!.replace(/\r$/, '');
    if (line.trim() === '' || line.startsWith('#')) continue;
    const colon = line.lastIndexOf(':');
    const identity = line.slice(0, colon);
    const hex = line.slice(colon + 1).trim();
    if (colon <= 0 || !/^(?:[0-9a-fA-F]{2})+$/.test(hex)) {
      throw new TlsCredentialsError(`${file}:${i + 1}: expected IDENTITY:HEXKEY (as psktool writes)`);
    }
    if (Buffer.byteLength(identity) > 128)
      throw new TlsCredentialsError(`${file}:${i + 1}: identity longer than 128 bytes`);
    // OpenSSL takes PSKs of up to 256 bytes (PSK_MAX_PSK_LEN).
    if (hex.length / 2 > 256) throw new TlsCredentialsError(`${file}:${i + 1}: key longer than 256 bytes`);
    if (keys.has(identity)) throw new TlsCredentialsError(`${file}:${i + 1}: identity '${identity}' given twice`);
    keys.set(identity, Buffer.from(hex, 'hex'));
  }
  if (keys.size === 0) throw new TlsCredentialsError(`${file}: no keys`);
  return keys;
}

/** PSK credentials from a psktool file, or from `DIR/keys.psk` when given a directory (as QEMU's `dir=`). */
export function loadPskCredentials(fileOrDir: string): PskCredentials {
  let file = fileOrDir;
  if (fs.statSync(fileOrDir, { throwIfNoEntry: false })?.isDirectory()) file = path.join(fileOrDir, 'keys.psk');
  const text = readCredentialFile(file, 'PSK keys file', true).toString('utf8');
  return { kind: 'psk', file, keys: parsePskKeys(text, file) };
}

/**
 * A certificate's subject as GnuTLS prints it (RFC 4514: the last RDN first, `CN=...,O=...,C=...`):
 * what QEMU's `--tls-authz` compares for X.509 clients.
 */
export function distinguishedName(cert: X509Certificate): string {
  return cert.subject.split('\n').reverse().join(',');
}

export interface NodeTlsOptions {
  credentials: TlsCredentials;
  /** 'require' (default, as qemu-nbd with --tls-creds) or 'allow' (plaintext clients too). */
  mode?: 'require' | 'allow';
  /**
   * Who may connect, as QEMU's --tls-authz: given the client's identity (the certificate's distinguished
   * name for X.509 with verify-peer, the PSK identity for PSK), a reason to refuse it, or undefined.
   */
  authorize?: (identity: string) => string | undefined;
}

/** Lowest TLS version offered (NBD's proto.md: TLS 1.2 or later). */
const MIN_VERSION = 'TLSv1.2';

/**
 * The STARTTLS hook of a connection (`ConnectionOptions.tls`) with Node's `tls`: the connection's
 * socket is handed, unread, to a TLS server session; the client's identity is checked against
 * `authorize` once the TLS handshake is done.
 */
export function nodeTls(options: NodeTlsOptions): TlsUpgrade {
  const cred = options.credentials;
  // tls.Server builds its own secure context from these (per connection: a few milliseconds).
  const contextOptions: tls.SecureContextOptions =
    cred.kind === 'x509'
      ? { ca: cred.ca, cert: cred.cert, key: cred.key, crl: cred.crl, minVersion: MIN_VERSION }
      : // PSK cipher suites for TLS 1.2; TLS 1.3 takes the PSK with its own suites (SHA-256 based).
        { ciphers: `PSK:${tls.DEFAULT_CIPHERS}`, minVersion: MIN_VERSION };
  return {
    mode: options.mode ?? 'require',
    async upgrade(stream: ByteStream, ack: Uint8Array): Promise<ByteStream> {
      if (!canStartTls(stream)) throw new Error('STARTTLS needs a socket connection');
      const raw = stream.detachForTls();
      await new Promise<void>((resolve, reject) => {
        raw.write(ack, (e) => (e ? reject(e) : resolve()));
      });
      let pskIdentity: string | undefined;
      const server = new tls.Server({
        ...contextOptions,
        // The connection's own handshake time limit covers the TLS handshake too.
        handshakeTimeout: 0,
        ...(cred.kind === 'x509'
          ? // The certificate is checked below, once the handshake is done (as QEMU does), to say why it failed.
            { requestCert: cred.verifyPeer, rejectUnauthorized: false }
          : {
              pskCallback: (_socket: tls.TLSSocket, identity: string) => {
                const key = cred.keys.get(identity);
                if (key !== undefined) pskIdentity = identity;
                return key ?? null;
              },
            }),
      });
      const secure = await new Promise<tls.TLSSocket>((resolve, reject) => {
        const onClose = () => reject(new Error('connection closed during the TLS handshake'));
        raw.once('close', onClose);
        server.once('secureConnection', (s: tls.TLSSocket) => {
          raw.off('close', onClose);
          resolve(s);
        });
        server.once('tlsClientError', (e: Error & { reason?: string }) => {
          raw.off('close', onClose);
          raw.destroy();
          // OpenSSL's own reason ("peer did not return a certificate"), not its multi-line dump.
          reject(new Error(e.reason ?? e.message.split('\n')[0]!));
        });
        server.emit('connection', raw);
      });
      let identity: string | undefined;
      if (cred.kind === 'psk') identity = pskIdentity;
      else if (cred.verifyPeer) {
        const peer = secure.getPeerX509Certificate();
        if (peer === undefined || !secure.authorized) {
          secure.destroy();
          throw new Error(
            peer === undefined
              ? 'the client sent no certificate (verify-peer is on)'
              : `the client certificate was refused: ${String(secure.authorizationError)}`,
          );
        }
        identity = distinguishedName(peer);
      }
      if (options.authorize !== undefined) {
        const refused = identity === undefined ? 'the client has no identity to check' : options.authorize(identity);
        if (refused !== undefined) {
          secure.destroy();
          throw new Error(`TLS authorization of ${identity ?? 'an anonymous client'} refused: ${refused}`);
        }
      }
      const cipher = secure.getCipher();
      const summary = [`${secure.getProtocol() ?? 'TLS'} ${cipher?.standardName ?? cipher?.name ?? ''}`.trim()];
      if (identity !== undefined) summary.push(`client ${identity}`);
      return Object.assign(stream.wrapTls(secure), { tlsSummary: summary.join(', ') });
    },
  };
}

/** What a ByteStream must offer for STARTTLS in Node (node.ts's SocketStream does). */
export interface StartTlsStream extends ByteStream {
  /**
   * Stops reading plaintext and hands over the socket; throws when the client already sent bytes behind
   * STARTTLS (plaintext that would otherwise be taken as part of the TLS session).
   */
  detachForTls(): net.Socket;
  /** A stream over the TLS socket, to replace this one. */
  wrapTls(secure: tls.TLSSocket): ByteStream;
}

function canStartTls(s: ByteStream): s is StartTlsStream {
  return typeof (s as Partial<StartTlsStream>).detachForTls === 'function';
}
