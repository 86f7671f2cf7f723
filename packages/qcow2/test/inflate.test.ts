/**
 * Deflate clusters: the synchronous zlib path (found at run time through
 * process.getBuiltinModule) and the portable DecompressionStream path give
 * the same clusters, with QEMU's rules: bytes after the deflate stream are
 * ignored, a stream longer than the cluster is cut at the cluster, a short or
 * corrupt one is an error.
 */
import { deflateRawSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { inflateCluster, inflateClusterSync } from '../src/inflate.js';

function content(n: number, seed: number): Uint8Array {
  const b = new Uint8Array(n);
  let x = seed;
  for (let i = 0; i < n; i++) {
    x = (x * 1103515245 + 12345) >>> 0;
    b[i] = (i >> 6) % 3 === 0 ? x >>> 24 : i & 0xff;
  }
  return b;
}

describe('deflate clusters, synchronous and streamed', () => {
  it('a stream followed by the next payload bytes: both paths give the cluster', async () => {
    const data = content(65536, 1);
    const payload = new Uint8Array([...deflateRawSync(data), 0x78, 0x9c, 1, 2, 3, 4, 5]);
    const sync = inflateClusterSync(payload, 65536);
    expect(sync).toBeDefined();
    expect(Buffer.from(sync!).equals(data)).toBe(true);
    expect(Buffer.from(await inflateCluster(payload, 65536)).equals(data)).toBe(true);
  });

  it('a stream longer than the cluster: no synchronous answer; the stream path cuts it at the cluster as QEMU', async () => {
    const data = content(100_000, 2);
    const payload = deflateRawSync(data);
    expect(inflateClusterSync(payload, 65536)).toBeUndefined();
    expect(Buffer.from(await inflateCluster(payload, 65536)).equals(data.subarray(0, 65536))).toBe(true);
  });

  it('a short stream and a corrupt one are errors on both paths', async () => {
    const short = deflateRawSync(content(1000, 3));
    expect(inflateClusterSync(short, 4096)).toBeUndefined();
    await expect(inflateCluster(short, 4096)).rejects.toThrow();
    const corrupt = new Uint8Array(64).fill(0xff);
    expect(inflateClusterSync(corrupt, 4096)).toBeUndefined();
    await expect(inflateCluster(corrupt, 4096)).rejects.toThrow();
  });
});
