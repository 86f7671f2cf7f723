/**
 * BLK_LOCK, BLK_NATIVE_IO and BLK_NATIVE_ADDON are read by the blk command
 * only (environment.ts) and reach the libraries as options: @blk/native and
 * @blk/images read no environment variable, yet blk behaves as before.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { hostOptionsFromEnvironment, s3OptionsFromEnvironment } from '../src/environment.js';
import { blk, scratchDir } from './helpers.js';

const scratch = scratchDir('environment');
let sparse: string;
beforeAll(() => {
  sparse = path.join(scratch.dir, 'sparse.raw');
  const fd = fs.openSync(sparse, 'w');
  fs.ftruncateSync(fd, 1024 * 1024);
  fs.writeSync(fd, Buffer.from('abc'), 0, 3, 512 * 1024);
  fs.closeSync(fd);
});

describe('hostOptionsFromEnvironment', () => {
  it('maps the variables to hostVfs options (unset: the defaults)', () => {
    expect(hostOptionsFromEnvironment({})).toEqual({});
    for (const off of ['off', 'OFF', '0', 'false']) {
      expect(hostOptionsFromEnvironment({ BLK_LOCK: off, BLK_NATIVE_IO: off })).toEqual({
        lock: 'off',
        nativeIo: false,
      });
    }
    expect(hostOptionsFromEnvironment({ BLK_LOCK: 'require' })).toEqual({ lock: 'require' });
    expect(hostOptionsFromEnvironment({ BLK_LOCK: 'on', BLK_NATIVE_IO: 'on' })).toEqual({ lock: 'on' });
    expect(hostOptionsFromEnvironment({ BLK_NATIVE_ADDON: '/x/blk_native.node' })).toEqual({
      addon: '/x/blk_native.node',
    });
    expect(hostOptionsFromEnvironment({ BLK_NATIVE_ADDON: '' })).toEqual({});
  });
});

describe('blk passes its environment down', () => {
  const missing = () => ({ BLK_NATIVE_ADDON: path.join(scratch.dir, 'nowhere', 'blk_native.node') });

  it("BLK_NATIVE_IO=off: raw files are read with Node's fs calls (no hole reporting in map)", (ctx) => {
    const native = blk(['map', '--output=json', sparse], { env: { BLK_NATIVE_IO: 'on' } });
    expect(native.code).toBe(0);
    const runs = JSON.parse(native.stdout) as Array<{ data: boolean }>;
    // A file system without SEEK_HOLE reports no holes either way: nothing to tell apart there.
    if (!runs.some((r) => !r.data)) ctx.skip();
    const off = blk(['map', '--output=json', sparse], { env: { BLK_NATIVE_IO: 'off' } });
    expect(off.code).toBe(0);
    expect(JSON.parse(off.stdout)).toEqual([expect.objectContaining({ start: 0, length: 1024 * 1024, data: true })]);
  });

  it('BLK_NATIVE_ADDON names the addon: a missing one means no locks and one warning', () => {
    const r = blk(['info', sparse], { env: { ...missing(), BLK_LOCK: 'on' } });
    expect(r.code).toBe(0);
    expect(r.stderr).toMatch(/WITHOUT OS advisory locks \(the @blk\/native addon did not load: Cannot find module/);
  });

  it('BLK_LOCK=require with a missing addon refuses; BLK_LOCK=off is silent', () => {
    const refused = blk(['info', sparse], { env: { ...missing(), BLK_LOCK: 'require' } });
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/cannot lock .*the @blk\/native addon is not available/);
    const silent = blk(['info', sparse], { env: { ...missing(), BLK_LOCK: 'off' } });
    expect(silent.code).toBe(0);
    expect(silent.stderr).toBe('');
  });
});

describe('S3 settings from the AWS variables', () => {
  it('reads keys, token, region (AWS_REGION before AWS_DEFAULT_REGION) and endpoint (the S3 one first)', () => {
    expect(
      s3OptionsFromEnvironment({
        AWS_ACCESS_KEY_ID: 'AK',
        AWS_SECRET_ACCESS_KEY: 'SK',
        AWS_SESSION_TOKEN: 'TOK',
        AWS_REGION: 'eu-west-3',
        AWS_DEFAULT_REGION: 'us-west-2',
        AWS_ENDPOINT_URL: 'http://general:1',
        AWS_ENDPOINT_URL_S3: 'http://s3only:2',
      }),
    ).toEqual({
      accessKeyId: 'AK',
      secretAccessKey: 'SK',
      sessionToken: 'TOK',
      region: 'eu-west-3',
      endpoint: 'http://s3only:2',
    });
    expect(
      s3OptionsFromEnvironment({
        AWS_DEFAULT_REGION: 'us-west-2',
        AWS_ENDPOINT_URL: 'http://general:1',
        AWS_REGION: '',
      }),
    ).toEqual({ region: 'us-west-2', endpoint: 'http://general:1' });
    expect(s3OptionsFromEnvironment({ HOME: '/root' })).toEqual({});
  });
});
