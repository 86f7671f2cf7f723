/**
 * S3-compatible object storage: `s3://bucket/key` read through HttpStorage
 * (the same block cache, read-ahead, validators, retries and typed errors),
 * each request signed with AWS Signature Version 4 (aws4fetch's signer, over
 * WebCrypto: portable). Read-only.
 *
 * Endpoints: without `endpoint`, AWS (`https://bucket.s3.REGION.amazonaws.com/key`,
 * virtual-host style); with one (MinIO, s3rver, R2, ...), path style
 * (`ENDPOINT/bucket/key`) unless `addressing: 'virtual'`
 * (`scheme://bucket.HOST/key`). Without credentials, requests go unsigned (a
 * public bucket).
 */
import { AwsV4Signer } from 'aws4fetch';
import { BlockError } from '@blk/core/portable';
import { HttpStorage, type HttpRequestInfo, type HttpStorageOptions } from './storage.js';

export interface S3Options extends HttpStorageOptions {
  accessKeyId?: string;
  secretAccessKey?: string;
  /** Temporary credentials' token (x-amz-security-token). */
  sessionToken?: string;
  /** Signing region (default `us-east-1`). */
  region?: string;
  /** `http(s)://host[:port][/prefix]` of an S3-compatible server (default AWS for `region`). */
  endpoint?: string;
  /** `path` (`ENDPOINT/bucket/key`) or `virtual` (`bucket.HOST/key`); default virtual for AWS, path with `endpoint`. */
  addressing?: 'path' | 'virtual';
}

/** Is `path` an `s3://` URL? */
export function isS3Url(path: string): boolean {
  return /^s3:\/\//i.test(path);
}

const BUCKET = /^[a-z0-9][a-z0-9.\-_]{1,253}[a-z0-9]$/;

/** `s3://bucket/key` → bucket and key (the key URL-decoded); `invalid-argument` when it is none. */
export function parseS3Url(url: string): { bucket: string; key: string } {
  const m = /^s3:\/\/([^/?#]*)\/([^?#]*)$/i.exec(url);
  if (!m) throw new BlockError('invalid-argument', 'not an s3://bucket/key URL', { path: url });
  const bucket = m[1]!;
  let key: string;
  try {
    key = decodeURIComponent(m[2]!);
  } catch {
    throw new BlockError('invalid-argument', 'the key is not valid percent-encoding', { path: url });
  }
  if (!BUCKET.test(bucket)) {
    throw new BlockError('invalid-argument', `"${bucket}" is not an S3 bucket name`, { path: url });
  }
  if (key.length === 0 || key.length > 1024) {
    throw new BlockError('invalid-argument', 'an S3 key has 1 to 1024 characters', { path: url });
  }
  // URL parsers fold `.` and `..` segments: the request would name another key.
  if (key.split('/').some((seg) => seg === '.' || seg === '..')) {
    throw new BlockError('not-supported', 'keys with "." or ".." segments cannot be sent in a URL', { path: url });
  }
  return { bucket, key };
}

/** RFC 3986 encoding of a key, segment by segment (what SigV4 signs for S3). */
function encodeKey(key: string): string {
  return key
    .split('/')
    .map((seg) => encodeURIComponent(seg).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`))
    .join('/');
}

/** The http(s) URL a GET of `bucket`/`key` goes to under these options. */
export function s3RequestUrl(bucket: string, key: string, options: S3Options = {}): string {
  const region = options.region ?? 'us-east-1';
  if (!/^[a-z0-9-]{1,64}$/.test(region)) {
    throw new BlockError('invalid-argument', `"${region}" is not a region name`, { field: 'region' });
  }
  let base: URL;
  if (options.endpoint !== undefined) {
    try {
      base = new URL(options.endpoint);
    } catch {
      throw new BlockError('invalid-argument', `endpoint ${options.endpoint} is not a URL`, { field: 'endpoint' });
    }
    if (base.protocol !== 'http:' && base.protocol !== 'https:') {
      throw new BlockError('invalid-argument', `endpoint ${options.endpoint} is not http(s)`, { field: 'endpoint' });
    }
  } else {
    base = new URL(`https://s3.${region}.amazonaws.com/`);
  }
  const addressing = options.addressing ?? (options.endpoint === undefined ? 'virtual' : 'path');
  const prefix = base.pathname.replace(/\/+$/, '');
  if (addressing === 'virtual') {
    if (bucket.includes('.') && base.protocol === 'https:') {
      // A dotted bucket breaks the wildcard certificate of virtual hosts.
      return `${base.protocol}//${base.host}${prefix}/${bucket}/${encodeKey(key)}`;
    }
    return `${base.protocol}//${bucket}.${base.host}${prefix}/${encodeKey(key)}`;
  }
  return `${base.protocol}//${base.host}${prefix}/${bucket}/${encodeKey(key)}`;
}

/** The `authorize` hook signing each request with SigV4 (service s3, unsigned payload). */
export function sigV4(options: S3Options): HttpStorageOptions['authorize'] {
  const { accessKeyId, secretAccessKey, sessionToken } = options;
  if (accessKeyId === undefined && secretAccessKey === undefined) return undefined;
  if (!accessKeyId || !secretAccessKey) {
    throw new BlockError('invalid-argument', 'S3 credentials need both an access key id and a secret access key', {
      field: accessKeyId ? 'secretAccessKey' : 'accessKeyId',
    });
  }
  const region = options.region ?? 'us-east-1';
  const cache = new Map<string, ArrayBuffer>();
  return async (request: HttpRequestInfo) => {
    const signer = new AwsV4Signer({
      method: request.method,
      url: request.url,
      headers: request.headers,
      accessKeyId,
      secretAccessKey,
      sessionToken,
      service: 's3',
      region,
      cache,
      // The key is already encoded once (encodeKey); aws4fetch decodes the path and encodes it again.
    });
    const signed = await signer.sign();
    const out: Record<string, string> = {};
    signed.headers.forEach((value, name) => {
      out[name] = value;
    });
    return out;
  };
}

/**
 * Opens `s3://bucket/key` read-only: an HttpStorage (its `path` is the s3 URL) whose requests are signed.
 * Errors: `access denied (HTTP 403: SignatureDoesNotMatch)` and the like are `io` with code EACCES.
 */
export async function openS3(url: string, options: S3Options = {}): Promise<HttpStorage> {
  const { bucket, key } = parseS3Url(url);
  const requestUrl = s3RequestUrl(bucket, key, options);
  const {
    accessKeyId: _a,
    secretAccessKey: _s,
    sessionToken: _t,
    region: _r,
    endpoint: _e,
    addressing: _d,
    ...http
  } = options;
  const sign = sigV4(options);
  const authorize = sign === undefined ? http.authorize : sign;
  return HttpStorage.openAt(requestUrl, url, { ...http, authorize });
}
