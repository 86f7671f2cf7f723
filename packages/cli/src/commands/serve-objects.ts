/**
 * blk serve's QEMU user-creatable objects (`--object TYPE,id=ID,...`) and the TLS set-up they name:
 * tls-creds-x509 and tls-creds-psk (endpoint=server), authz-simple and authz-listfile, as qemu-nbd
 * takes them with --tls-creds ID and --tls-authz ID.
 */
import * as fs from 'node:fs';
import { parseBool, parseKeyval } from '@blk/nbd';
import {
  loadPskCredentials,
  loadX509Credentials,
  type NodeTlsOptions,
  type TlsCredentials,
  TlsCredentialsError,
} from '@blk/nbd/node';
import { UsageError } from '../errors.js';

export interface QemuObject {
  type: string;
  id: string;
  props: Map<string, string | undefined>;
}

const OBJECT_PROPS: Record<string, readonly string[]> = {
  'tls-creds-x509': ['dir', 'endpoint', 'verify-peer', 'priority', 'sanity-check'],
  'tls-creds-psk': ['dir', 'endpoint', 'username', 'priority'],
  'authz-simple': ['identity'],
  'authz-listfile': ['filename', 'refresh'],
};

/** `TYPE,id=ID,key=value,...` (QEMU's `--object` syntax, `,,` for a comma inside a value). */
export function parseObject(text: string): QemuObject {
  const [first, ...rest] = parseKeyval(text);
  const type = first![1] === undefined ? first![0] : undefined;
  const pairs = type === undefined ? [first!, ...rest] : rest;
  const props = new Map<string, string | undefined>();
  let qomType = type;
  for (const [k, v] of pairs) {
    if (k === 'qom-type' && qomType === undefined) {
      qomType = v;
      continue;
    }
    if (props.has(k)) throw new UsageError(`--object ${text}: '${k}' given twice`);
    props.set(k, v);
  }
  if (qomType === undefined || !(qomType in OBJECT_PROPS)) {
    throw new UsageError(
      `--object ${text}: unknown object type '${qomType ?? ''}' (blk serve takes ${Object.keys(OBJECT_PROPS).join(', ')})`,
    );
  }
  const id = props.get('id');
  props.delete('id');
  if (!id) throw new UsageError(`--object ${text}: needs id=ID`);
  for (const k of props.keys()) {
    if (!OBJECT_PROPS[qomType]!.includes(k)) {
      throw new UsageError(`--object ${qomType},id=${id}: unknown property '${k}'`);
    }
  }
  return { type: qomType, id, props };
}

function bool(o: QemuObject, key: string, dflt: boolean): boolean {
  const v = o.props.get(key);
  if (!o.props.has(key)) return dflt;
  try {
    return parseBool(v, `--object ${o.type},id=${o.id}: ${key}`);
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
}

function required(o: QemuObject, key: string): string {
  const v = o.props.get(key);
  if (!v) throw new UsageError(`--object ${o.type},id=${o.id}: needs ${key}=...`);
  return v;
}

/** Credentials of a tls-creds-x509 or tls-creds-psk object (files read and checked now). */
export function credentialsOf(o: QemuObject): TlsCredentials {
  const endpoint = o.props.get('endpoint') ?? 'client';
  if (endpoint !== 'server') {
    throw new UsageError(`--object ${o.type},id=${o.id}: a server needs endpoint=server (not '${endpoint}')`);
  }
  if (o.props.has('priority')) {
    throw new UsageError(`--object ${o.type},id=${o.id}: 'priority' (a GnuTLS priority string) is not supported`);
  }
  try {
    if (o.type === 'tls-creds-x509') {
      // sanity-check=off is accepted but the checks (key matches, CA issued, dates) always run: they are cheap.
      bool(o, 'sanity-check', true);
      return loadX509Credentials(required(o, 'dir'), { verifyPeer: bool(o, 'verify-peer', true) });
    }
    if (o.type === 'tls-creds-psk') {
      if (o.props.has('username')) {
        throw new UsageError(`--object ${o.type},id=${o.id}: 'username' is for a client endpoint`);
      }
      return loadPskCredentials(`${required(o, 'dir')}/keys.psk`);
    }
  } catch (e) {
    if (e instanceof TlsCredentialsError) throw new UsageError(`--object ${o.type},id=${o.id}: ${e.message}`);
    throw e;
  }
  throw new UsageError(`--tls-creds ${o.id}: '${o.type}' objects are not TLS credentials`);
}

/** fnmatch(3) without flags, as QEMU's authz-list "glob" rules: * ? [...] classes, \ quotes the next character. */
export function globToRegExp(glob: string): RegExp {
  const quote = (c: string) => c.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');
  let re = '';
  for (let i = 0; i < glob.length; i++) {
    const c = glob[i]!;
    if (c === '\\' && i + 1 < glob.length) re += quote(glob[++i]!);
    else if (c === '*') re += '.*';
    else if (c === '?') re += '.';
    else if (c === '[') {
      const end = glob.indexOf(']', i + 2);
      if (end < 0) re += '\\[';
      else {
        let body = glob.slice(i + 1, end);
        const negate = body.startsWith('!');
        if (negate) body = body.slice(1);
        re += `[${negate ? '^' : ''}${body.replace(/[\\\]^]/g, '\\$&')}]`;
        i = end;
      }
    } else re += quote(c);
  }
  return new RegExp(`^${re}$`, 's');
}

interface AuthzRule {
  match: string;
  policy: 'allow' | 'deny';
  format: 'exact' | 'glob';
}

/** The rules of an authz-listfile file (QEMU's JSON: `{ "rules": [ { match, policy, format } ], "policy" }`). */
export function parseAuthzList(text: string, file: string): { rules: AuthzRule[]; policy: 'allow' | 'deny' } {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new UsageError(`${file}: not JSON (${(e as Error).message})`);
  }
  const fail = (m: string): never => {
    throw new UsageError(`${file}: ${m}`);
  };
  if (typeof json !== 'object' || json === null || Array.isArray(json)) return fail('expected an object');
  const o = json as Record<string, unknown>;
  const policy = o.policy ?? 'deny';
  if (policy !== 'allow' && policy !== 'deny') fail('"policy" must be "allow" or "deny"');
  const rules = (o.rules ?? []) as unknown;
  if (!Array.isArray(rules)) return fail('"rules" must be an array');
  return {
    policy: policy as 'allow' | 'deny',
    rules: rules.map((r, i) => {
      if (typeof r !== 'object' || r === null) return fail(`rules[${i}]: expected an object`);
      const { match, policy: p, format = 'exact' } = r as Record<string, unknown>;
      if (typeof match !== 'string') fail(`rules[${i}]: "match" must be a string`);
      if (p !== 'allow' && p !== 'deny') fail(`rules[${i}]: "policy" must be "allow" or "deny"`);
      if (format !== 'exact' && format !== 'glob') fail(`rules[${i}]: "format" must be "exact" or "glob"`);
      return { match, policy: p, format } as AuthzRule;
    }),
  };
}

/** The check of an authz-simple or authz-listfile object: a reason to refuse an identity, or undefined. */
export function authorizerOf(o: QemuObject): (identity: string) => string | undefined {
  if (o.type === 'authz-simple') {
    const want = required(o, 'identity');
    return (id) => (id === want ? undefined : `not the identity of authz-simple '${o.id}'`);
  }
  if (o.type === 'authz-listfile') {
    const file = required(o, 'filename');
    const refresh = bool(o, 'refresh', true);
    const load = () => {
      const st = fs.statSync(file);
      if (!st.isFile() || st.size > 1024 * 1024) throw new UsageError(`${file}: not a regular file of at most 1 MiB`);
      return parseAuthzList(fs.readFileSync(file, 'utf8'), file);
    };
    const initial = load(); // a broken file stops the server from starting
    return (id) => {
      let list = initial;
      if (refresh) {
        // Re-read at each TLS connection (QEMU watches the file): a file broken since is a refusal.
        try {
          list = load();
        } catch (e) {
          return `authz-listfile '${o.id}' unreadable: ${(e as Error).message}`;
        }
      }
      for (const r of list.rules) {
        const hit = r.format === 'exact' ? r.match === id : globToRegExp(r.match).test(id);
        if (hit) return r.policy === 'allow' ? undefined : `denied by a rule of authz-listfile '${o.id}'`;
      }
      return list.policy === 'allow' ? undefined : `no rule of authz-listfile '${o.id}' allows it`;
    };
  }
  throw new UsageError(`--tls-authz ${o.id}: '${o.type}' objects are not authorization objects`);
}

export interface TlsFlags {
  object?: string[];
  tlsCreds?: string;
  tlsAuthz?: string;
  tlsCertificates?: string;
  tlsPsk?: string;
  tlsVerifyPeer?: boolean;
}

/** The TLS set-up the flags ask for, or undefined (no TLS). */
export function tlsOf(opts: TlsFlags): NodeTlsOptions | undefined {
  const objects = new Map<string, QemuObject>();
  for (const text of opts.object ?? []) {
    const o = parseObject(text);
    if (objects.has(o.id)) throw new UsageError(`--object: id '${o.id}' given twice`);
    objects.set(o.id, o);
  }
  const ways = [opts.tlsCreds, opts.tlsCertificates, opts.tlsPsk].filter((x) => x !== undefined).length;
  if (ways > 1) throw new UsageError('give one of --tls-creds, --tls-certificates and --tls-psk');
  if (opts.tlsVerifyPeer && opts.tlsCertificates === undefined) {
    throw new UsageError('--tls-verify-peer goes with --tls-certificates (for --object, use verify-peer=on)');
  }
  if (opts.tlsAuthz !== undefined && ways === 0) throw new UsageError('--tls-authz needs TLS credentials');
  let credentials: TlsCredentials | undefined;
  try {
    if (opts.tlsCreds !== undefined) {
      const o = objects.get(opts.tlsCreds);
      if (!o) throw new UsageError(`--tls-creds ${opts.tlsCreds}: no --object with this id`);
      credentials = credentialsOf(o);
    } else if (opts.tlsCertificates !== undefined) {
      credentials = loadX509Credentials(opts.tlsCertificates, { verifyPeer: opts.tlsVerifyPeer === true });
    } else if (opts.tlsPsk !== undefined) {
      credentials = loadPskCredentials(opts.tlsPsk);
    }
  } catch (e) {
    if (e instanceof TlsCredentialsError) throw new UsageError(e.message);
    throw e;
  }
  if (credentials === undefined) return undefined;
  let authorize: NodeTlsOptions['authorize'];
  if (opts.tlsAuthz !== undefined) {
    const o = objects.get(opts.tlsAuthz);
    if (!o) throw new UsageError(`--tls-authz ${opts.tlsAuthz}: no --object with this id`);
    if (credentials.kind === 'x509' && !credentials.verifyPeer) {
      throw new UsageError('--tls-authz checks client certificates: it needs verify-peer=on');
    }
    authorize = authorizerOf(o);
  }
  return { credentials, mode: 'require', authorize };
}
