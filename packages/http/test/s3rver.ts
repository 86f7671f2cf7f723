/**
 * A real S3-compatible server for the tests: @20minutes/s3rver on a free
 * loopback port with one bucket, and a signed PUT to fill it.
 */
import S3rver from '@20minutes/s3rver';
import { AwsClient } from 'aws4fetch';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

export const ACCESS_KEY = 'S3RVER';
export const SECRET_KEY = 'S3RVER';
export const BUCKET = 'images';

export class S3Server {
  private server: S3rver | undefined;
  private dir = '';
  endpoint = '';
  private readonly client = new AwsClient({
    accessKeyId: ACCESS_KEY,
    secretAccessKey: SECRET_KEY,
    service: 's3',
    region: 'us-east-1',
    retries: 0,
  });

  async start(): Promise<this> {
    this.dir = fs.mkdtempSync(path.join(os.tmpdir(), 'blk-s3rver-'));
    this.server = new S3rver({
      address: '127.0.0.1',
      port: 0,
      silent: true,
      directory: this.dir,
      configureBuckets: [{ name: BUCKET }],
    });
    const { port } = (await this.server.run()) as { port: number };
    this.endpoint = `http://127.0.0.1:${port}`;
    return this;
  }

  /** Stores `data` as `key` in the bucket (a signed PUT). */
  async put(key: string, data: Uint8Array): Promise<void> {
    const res = await this.client.fetch(`${this.endpoint}/${BUCKET}/${key}`, { method: 'PUT', body: data });
    if (res.status !== 200) throw new Error(`PUT ${key}: HTTP ${res.status} ${await res.text()}`);
  }

  async stop(): Promise<void> {
    await this.server?.close();
    fs.rmSync(this.dir, { recursive: true, force: true });
  }
}
