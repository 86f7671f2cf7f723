/**
 * Raw deflate of one compressed qcow2 cluster through the portable
 * DecompressionStream('deflate-raw') (Node 18+, browsers): no node:zlib.
 * QEMU stores the payload rounded up to whole sectors, so bytes after the end
 * of the deflate stream are expected; like QEMU (inflate until the output
 * cluster is full) the cluster is done once `clusterSize` bytes came out.
 */

interface DecompressionStreamLike {
  readonly readable: ReadableStream<Uint8Array>;
  readonly writable: WritableStream<Uint8Array>;
}
type DecompressionStreamCtor = new (format: 'deflate-raw') => DecompressionStreamLike;

export async function inflateCluster(payload: Uint8Array, clusterSize: number): Promise<Uint8Array> {
  const Ctor = (globalThis as unknown as { DecompressionStream?: DecompressionStreamCtor }).DecompressionStream;
  if (!Ctor) throw new Error('DecompressionStream is not available in this runtime');
  const ds = new Ctor('deflate-raw');
  const out = new Uint8Array(clusterSize);
  let filled = 0;
  const writer = ds.writable.getWriter();
  // Errors of the writing side (junk after the stream end) surface on the reader; ignore them here.
  writer.write(payload).catch(() => {});
  writer.close().catch(() => {});
  const reader = ds.readable.getReader();
  try {
    while (filled < clusterSize) {
      const { value, done } = await reader.read();
      if (done) break;
      const take = Math.min(value.length, clusterSize - filled);
      out.set(value.subarray(0, take), filled);
      filled += take;
    }
  } catch (err) {
    if (filled < clusterSize) throw err;
  } finally {
    reader.cancel().catch(() => {});
  }
  if (filled < clusterSize) throw new Error(`decompressed to ${filled} of ${clusterSize} bytes`);
  return out;
}
