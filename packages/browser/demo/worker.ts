/**
 * The demo's worker: blk runs here, where OPFS synchronous access handles exist. The page sends
 * { id, op, args } and gets { id, value } or { id, error }. A download is a ReadableStream
 * transferred to the page (nothing buffered here beyond one chunk).
 */
import type { Image } from '@blk/core/portable';
import { browserHost, createImageFromStream, imageReadableStream, imageSparseStream } from '@blk/browser';

/** Overlays live in OPFS under this directory (they survive reloads). */
const OVERLAYS = '/opfs/blk-demo';
const host = browserHost();

/** Backing formats: cow records none, so a cow overlay's backing opens as cow when it probes as one. */
async function open(path: string, readOnly: boolean): Promise<Image> {
  return host.openImage(path, { readOnly, backing: { format: 'probe' } });
}

export interface ImageSummary {
  path: string;
  format: string;
  size: number;
  chain: Array<{ path: string; format: string }>;
  info: Record<string, unknown>;
  /** Allocation map: [start, length, depth (-1: none), data (1/0)] runs, at most 2000. */
  map: Array<[number, number, number, number]>;
  truncatedMap: boolean;
  writable: boolean;
}

async function summary(image: Image): Promise<ImageSummary> {
  const map: Array<[number, number, number, number]> = [];
  let truncatedMap = false;
  for await (const r of image.map()) {
    if (map.length >= 2000) {
      truncatedMap = true;
      break;
    }
    map.push([r.start, r.length, r.depth ?? -1, r.data ? 1 : 0]);
  }
  const info = image.info();
  return {
    path: image.path,
    format: image.format,
    size: image.size,
    chain: image.chain().map((i) => ({ path: i.path, format: i.format })),
    info: JSON.parse(JSON.stringify(info, (_k, v) => (typeof v === 'bigint' ? String(v) : v))) as Record<
      string,
      unknown
    >,
    map,
    truncatedMap,
    writable: image.capabilities.write,
  };
}

async function withImage<T>(path: string, readOnly: boolean, fn: (image: Image) => Promise<T>): Promise<T> {
  const image = await open(path, readOnly);
  try {
    return await fn(image);
  } finally {
    await image.close();
  }
}

// biome-ignore lint/suspicious/noExplicitAny: each operation takes its own arguments from postMessage
const ops: Record<string, (...args: any[]) => Promise<unknown>> = {
  /** Registers picked files under /files/ (an image and the files it names as backing). */
  async pick(files: File[]) {
    return files.map((f) => host.vfs.files.put(f.name, f));
  },
  async info(path: string) {
    return withImage(path, true, summary);
  },
  /** A new cow overlay in OPFS over `base` (a URL or a picked file); replaces one of the same name. */
  async createOverlay(base: string, name: string) {
    const path = `${OVERLAYS}/${name}`;
    if (await host.vfs.exists(path)) await host.vfs.remove(path);
    // The base's own format (cow records none, so the overlay opens it by probing).
    const format = await withImage(base, true, async (image) => image.format);
    await host.createImage(path, { format: 'cow', backing: { path: base, format } });
    return path;
  },
  /** Overlays kept in OPFS from earlier visits. */
  async overlays() {
    const root = await navigator.storage.getDirectory();
    let dir: FileSystemDirectoryHandle;
    try {
      dir = await root.getDirectoryHandle(OVERLAYS.split('/').pop()!);
    } catch {
      return [];
    }
    const names: string[] = [];
    for await (const [name] of (dir as unknown as { entries(): AsyncIterable<[string, unknown]> }).entries()) {
      names.push(`${OVERLAYS}/${name}`);
    }
    return names.sort();
  },
  async remove(path: string) {
    await host.vfs.remove(path);
  },
  async write(path: string, offset: number, text: string) {
    return withImage(path, false, async (image) => {
      const data = new TextEncoder().encode(text);
      await image.write(offset, data);
      await image.flush();
      return data.length;
    });
  },
  async read(path: string, offset: number, length: number) {
    return withImage(path, true, async (image) => {
      const n = Math.max(0, Math.min(length, image.size - offset));
      return Array.from(await image.read(offset, n));
    });
  },
  /** The merged image as a byte stream, transferred to the page (see `post`); the image closes when it ends. */
  async stream(path: string) {
    const image = await open(path, true);
    const closing = new TransformStream<Uint8Array, Uint8Array>({
      flush: () => image.close(),
    });
    return { size: image.size, stream: imageReadableStream(image).pipeThrough(closing) };
  },
  /**
   * The merged image written into an OPFS file (only its data runs: holes stay holes), for a
   * download of a disk-backed File where no save picker exists.
   */
  async exportToOpfs(path: string) {
    return withImage(path, true, async (image) => {
      const name = `${path
        .split('/')
        .pop()!
        .replace(/\.[^.]*$/, '')}.raw`;
      const target = `/opfs/blk-demo-exports/${name}`;
      if (await host.vfs.exists(target)) await host.vfs.remove(target);
      await createImageFromStream(host, target, imageSparseStream(image), { format: 'raw', size: image.size });
      return { name, dir: 'blk-demo-exports' };
    });
  },
};

self.onmessage = async (event: MessageEvent) => {
  const { id, op, args } = event.data as { id: number; op: string; args: unknown[] };
  const post = (message: unknown, transfer: Transferable[] = []) =>
    (self as unknown as Worker).postMessage(message, transfer);
  try {
    const fn = ops[op];
    if (!fn) throw new Error(`no operation ${op}`);
    const value = await fn(...args);
    const stream = (value as { stream?: unknown } | undefined)?.stream;
    post({ id, value }, stream instanceof ReadableStream ? [stream as unknown as Transferable] : []);
  } catch (err) {
    const e = err as { kind?: string; message?: string; name?: string };
    post({ id, error: { kind: e.kind, name: e.name, message: e.message ?? String(err) } });
  }
};
