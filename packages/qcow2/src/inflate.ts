/**
 * Raw deflate of one compressed qcow2 cluster: Node's synchronous zlib when
 * the runtime exposes it without an import (below), else the portable
 * DecompressionStream('deflate-raw') (Node 18+, browsers): no node:zlib import.
 * QEMU stores the payload rounded up to whole sectors, so bytes after the end
 * of the deflate stream are expected; like QEMU (inflate until the output
 * cluster is full) the cluster is done once `clusterSize` bytes came out.
 */

interface DecompressionStreamLike {
  readonly readable: ReadableStream<Uint8Array>;
  readonly writable: WritableStream<Uint8Array>;
}
type DecompressionStreamCtor = new (format: 'deflate-raw') => DecompressionStreamLike;

type InflateRawSync = (data: Uint8Array, options: { maxOutputLength: number; chunkSize: number }) => Uint8Array;
let zlibInflate: InflateRawSync | null | undefined;

/**
 * Node's zlib.inflateRawSync when the runtime offers it through
 * `process.getBuiltinModule` (Node 20.16+), found at run time: no import of a
 * Node built-in, so the package stays portable, and elsewhere null.
 */
function runtimeInflate(): InflateRawSync | null {
  if (zlibInflate === undefined) {
    const proc = (globalThis as { process?: { getBuiltinModule?: (id: string) => unknown } }).process;
    const zlib = proc?.getBuiltinModule?.('zlib') as { inflateRawSync?: InflateRawSync } | undefined;
    zlibInflate = typeof zlib?.inflateRawSync === 'function' ? zlib.inflateRawSync.bind(zlib) : null;
  }
  return zlibInflate;
}

/**
 * One cluster inflated synchronously, when the runtime has a synchronous
 * inflate and the stream yields exactly the cluster (bytes after the end of
 * the deflate stream are ignored, as by QEMU); undefined otherwise (no such
 * inflate, or a stream that is short, longer than the cluster or corrupt:
 * the DecompressionStream path decides those, with QEMU's semantics).
 * A DecompressionStream per cluster costs a stream, promises and an abort
 * error with a stack trace; this is about 3x cheaper per 64 KiB cluster.
 */
export function inflateClusterSync(payload: Uint8Array, clusterSize: number): Uint8Array | undefined {
  const inflate = runtimeInflate();
  if (!inflate) return undefined;
  try {
    // One output chunk per cluster (zlib's default is 16 KiB chunks, concatenated afterwards).
    const out = inflate(payload, { maxOutputLength: clusterSize, chunkSize: Math.max(clusterSize, 64) });
    if (out.length === clusterSize) return new Uint8Array(out.buffer, out.byteOffset, out.byteLength);
  } catch {
    /* the stream path below reports it */
  }
  return undefined;
}

export async function inflateCluster(payload: Uint8Array, clusterSize: number): Promise<Uint8Array> {
  const sync = inflateClusterSync(payload, clusterSize);
  if (sync) return sync;
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
