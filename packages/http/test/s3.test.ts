/**
 * S3: `s3://bucket/key` through HttpStorage with SigV4-signed requests,
 * against a real S3-compatible server (@20minutes/s3rver), plus the URL
 * forms (path and virtual-host style) and the signer against AWS's
 * published example.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AwsV4Signer } from 'aws4fetch';
import * as http from 'node:http';
import { BlockError } from '@blk/core';
import { openS3, parseS3Url, s3RequestUrl, type S3Options } from '@blk/http';
import { pattern, sameBytes } from './server.js';
import { ACCESS_KEY, BUCKET, S3Server, SECRET_KEY } from './s3rver.js';

const SIZE = 3 * 1024 * 1024 + 77;
const DATA = pattern(SIZE, 11);
const BS = 64 * 1024;

let s3: S3Server;
beforeAll(async () => {
  s3 = await new S3Server().start();
  await s3.put('disks/disk.img', DATA);
});
afterAll(() => s3.stop());

const creds = (o: S3Options = {}): S3Options => ({
  endpoint: s3.endpoint,
  accessKeyId: ACCESS_KEY,
  secretAccessKey: SECRET_KEY,
  blockSize: BS,
  retryDelay: 1,
  ...o,
});

async function read(s: { read(o: number, into: Uint8Array): Promise<number> }, offset: number, length: number) {
  const into = new Uint8Array(length);
  return into.subarray(0, await s.read(offset, into));
}

/** Sends a request to 127.0.0.1:port with the URL's host as Host (no DNS for bucket.localhost here). */
function loopbackFetch(port: number): typeof fetch {
  return (async (input: string | URL | Request, init?: RequestInit) => {
    const url = new URL(String(input));
    const headers = new Headers(init?.headers);
    const plain: Record<string, string> = { host: url.host };
    headers.forEach((v, k) => {
      plain[k] = v;
    });
    return new Promise<Response>((resolve, reject) => {
      const req = http.request(
        { host: '127.0.0.1', port, path: url.pathname + url.search, method: init?.method ?? 'GET', headers: plain },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () => {
            const h = new Headers();
            for (const [k, v] of Object.entries(res.headers)) if (typeof v === 'string') h.set(k, v);
            resolve(new Response(Buffer.concat(chunks), { status: res.statusCode ?? 0, headers: h }));
          });
          res.on('error', reject);
        },
      );
      req.on('error', reject);
      req.end();
    });
  }) as typeof fetch;
}

describe('S3 URLs', () => {
  it('parses s3://bucket/key and refuses what is not one', () => {
    expect(parseS3Url('s3://images/a/b%20c.img')).toEqual({ bucket: 'images', key: 'a/b c.img' });
    for (const bad of ['s3://images', 's3://images/', 's3://Bad_Bucket!/k', 'http://images/k']) {
      expect(() => parseS3Url(bad), bad).toThrow(BlockError);
    }
    expect(() => parseS3Url('s3://images/a/../b')).toThrow(/"\." or "\.\." segments/);
  });

  it('builds virtual-host URLs for AWS and path-style URLs for an endpoint', () => {
    expect(s3RequestUrl('images', 'a b/c+d.img', { region: 'eu-west-1' })).toBe(
      'https://images.s3.eu-west-1.amazonaws.com/a%20b/c%2Bd.img',
    );
    expect(s3RequestUrl('images', 'k', { endpoint: 'http://127.0.0.1:9000' })).toBe('http://127.0.0.1:9000/images/k');
    expect(s3RequestUrl('images', 'k', { endpoint: 'http://minio.local:9000/', addressing: 'virtual' })).toBe(
      'http://images.minio.local:9000/k',
    );
    // A dotted bucket over https stays path style (the wildcard certificate would not match).
    expect(s3RequestUrl('my.images', 'k', {})).toBe('https://s3.us-east-1.amazonaws.com/my.images/k');
    expect(() => s3RequestUrl('images', 'k', { endpoint: 'ftp://x' })).toThrow(/not http/);
  });

  it("signs as AWS's published example (GET Object with Range, examplebucket, 2013-05-24)", async () => {
    // docs.aws.amazon.com AmazonS3 sig-v4-header-based-auth: "Example: GET Object".
    const signer = new AwsV4Signer({
      method: 'GET',
      url: 'https://examplebucket.s3.amazonaws.com/test.txt',
      headers: {
        Range: 'bytes=0-9',
        'x-amz-content-sha256': 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855',
      },
      accessKeyId: 'AKIAIOSFODNN7EXAMPLE',
      secretAccessKey: 'wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY',
      service: 's3',
      region: 'us-east-1',
      datetime: '20130524T000000Z',
      allHeaders: true,
    });
    const { headers } = await signer.sign();
    expect(headers.get('authorization')).toBe(
      'AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, '
        + 'SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, '
        + 'Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41',
    );
  });
});

describe('S3Storage against s3rver', () => {
  it('reads a signed object in ranges: size, bytes, read-ahead, the s3:// URL as its path', async () => {
    const s = await openS3(`s3://${BUCKET}/disks/disk.img`, creds());
    expect(s.path).toBe(`s3://${BUCKET}/disks/disk.img`);
    expect(await s.size()).toBe(SIZE);
    expect(s.etag).toMatch(/^"[0-9a-f]{32}"$/);
    expect(sameBytes(await read(s, SIZE - 1000, 5000), DATA.subarray(SIZE - 1000))).toBe(true);
    const all = new Uint8Array(SIZE);
    for (let off = 0; off < SIZE; off += 4096) await s.read(off, all.subarray(off, Math.min(SIZE, off + 4096)));
    expect(sameBytes(all, DATA)).toBe(true);
    expect(s.stats.requests).toBeLessThan(20); // 800 reads of 4 KiB
    await s.close();
  });

  it('reads through a virtual-host style endpoint (bucket.host; unsigned: s3rver checks vhost SigV4 against /bucket/key, not the /key AWS signs, which the AWS example above covers)', async () => {
    const port = Number(new URL(s3.endpoint).port);
    const s = await openS3(`s3://${BUCKET}/disks/disk.img`, {
      endpoint: `http://s3.amazonaws.com:${port}`,
      addressing: 'virtual',
      fetch: loopbackFetch(port),
      blockSize: BS,
    });
    expect(sameBytes(await read(s, 100_000, 1000), DATA.subarray(100_000, 101_000))).toBe(true);
  });

  it('a wrong secret is an io error with code EACCES naming SignatureDoesNotMatch and the s3 URL', async () => {
    const err = await openS3(`s3://${BUCKET}/disks/disk.img`, creds({ secretAccessKey: 'wrong' })).catch(
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(BlockError);
    expect(err).toMatchObject({ kind: 'io', code: 'EACCES', path: `s3://${BUCKET}/disks/disk.img` });
    expect((err as Error).message).toMatch(/HTTP 403: SignatureDoesNotMatch/);
    const unknownKey = await openS3(`s3://${BUCKET}/disks/disk.img`, creds({ accessKeyId: 'NOBODY' })).catch(
      (e: unknown) => e,
    );
    expect(unknownKey).toMatchObject({ kind: 'io', code: 'EACCES' });
    expect((unknownKey as Error).message).toMatch(/InvalidAccessKeyId/);
  });

  it('a missing key is ENOENT; half the credentials are invalid-argument', async () => {
    await expect(openS3(`s3://${BUCKET}/nope.img`, creds())).rejects.toMatchObject({ kind: 'io', code: 'ENOENT' });
    await expect(
      openS3(`s3://${BUCKET}/disks/disk.img`, { endpoint: s3.endpoint, accessKeyId: ACCESS_KEY }),
    ).rejects.toMatchObject({ kind: 'invalid-argument' });
  });

  it('the object replaced mid-read: ESTALE, never the new bytes', async () => {
    await s3.put('disks/changing.img', DATA);
    const s = await openS3(`s3://${BUCKET}/disks/changing.img`, creds({ readAhead: 0 }));
    expect(sameBytes(await read(s, 0, 100), DATA.subarray(0, 100))).toBe(true);
    const other = pattern(SIZE, 12);
    await s3.put('disks/changing.img', other);
    const err = await read(s, 2 * 1024 * 1024, 4096).catch((e: unknown) => e);
    expect(err).toMatchObject({ kind: 'io', code: 'ESTALE', path: `s3://${BUCKET}/disks/changing.img` });
    expect((err as Error).message).toMatch(/the object changed/);
  });
});
