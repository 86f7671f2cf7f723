/**
 * The demo page: UI only; blk runs in demo/worker.ts. Pick a local image (and its backing files)
 * or give a URL, see its info and allocation map, write through a cow overlay kept in OPFS,
 * reload and see the changes, download the merged image as a stream.
 */
interface Summary {
  path: string;
  format: string;
  size: number;
  chain: Array<{ path: string; format: string }>;
  info: Record<string, unknown>;
  map: Array<[number, number, number, number]>;
  truncatedMap: boolean;
  writable: boolean;
}

const worker = new Worker(new URL('./worker.js', import.meta.url), { type: 'module' });
let serial = 0;
const waiting = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
worker.onmessage = (event: MessageEvent) => {
  const { id, value, error } = event.data as {
    id: number;
    value?: unknown;
    error?: { kind?: string; message: string };
  };
  const w = waiting.get(id);
  waiting.delete(id);
  if (!w) return;
  if (error) w.reject(Object.assign(new Error(error.kind ? `${error.kind}: ${error.message}` : error.message), error));
  else w.resolve(value);
};
function call<T = unknown>(op: string, ...args: unknown[]): Promise<T> {
  return new Promise((resolve, reject) => {
    const id = ++serial;
    waiting.set(id, { resolve: resolve as (v: unknown) => void, reject });
    worker.postMessage({ id, op, args });
  });
}

const $ = <T extends HTMLElement>(id: string) => document.getElementById(id) as T;
const status = (text: string, error = false) => {
  const el = $('status');
  el.textContent = text;
  el.className = error ? 'error' : '';
};
/** The image shown (a /files path, a URL or an OPFS overlay). */
let current: string | undefined;

function human(n: number): string {
  const units = ['bytes', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  let v = n;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return i === 0 ? `${n} bytes` : `${v.toFixed(v < 10 ? 2 : 1)} ${units[i]} (${n} bytes)`;
}

const COLORS = ['#2b7bb9', '#e08a1e', '#3a9a4a', '#9b59b6', '#c0392b'];

function drawMap(s: Summary): void {
  const canvas = $<HTMLCanvasElement>('map');
  const ctx = canvas.getContext('2d')!;
  ctx.fillStyle = '#eee';
  ctx.fillRect(0, 0, canvas.width, canvas.height);
  for (const [start, length, depth, data] of s.map) {
    if (depth < 0 || !data) continue;
    ctx.fillStyle = COLORS[depth % COLORS.length]!;
    const x = (start / s.size) * canvas.width;
    const w = Math.max(1, (length / s.size) * canvas.width);
    ctx.fillRect(x, 0, w, canvas.height);
  }
  $('legend').innerHTML = s.chain
    .map(
      (l, d) => `<span style="color:${COLORS[d % COLORS.length]}">■</span> ${d}: ${escapeHtml(l.path)} (${l.format})`,
    )
    .join('<br>');
}

function escapeHtml(s: string): string {
  return s.replace(/[&<>"]/g, (c) => `&#${c.charCodeAt(0)};`);
}

async function show(path: string): Promise<void> {
  status(`opening ${path} ...`);
  const s = await call<Summary>('info', path);
  current = path;
  const data = s.map.filter((r) => r[3] && r[2] >= 0).reduce((a, r) => a + r[1], 0);
  $('info').textContent = [
    `image: ${s.path}`,
    `file format: ${s.format}`,
    `virtual size: ${human(s.size)}`,
    `data (from the allocation map): ${human(data)}${s.truncatedMap ? ' (map cut at 2000 runs)' : ''}`,
    ...s.chain.slice(1).map((l, i) => `backing file ${i + 1}: ${l.path} (${l.format})`),
    `format specific: ${JSON.stringify(s.info)}`,
  ].join('\n');
  drawMap(s);
  $<HTMLButtonElement>('overlay').disabled = false;
  $<HTMLButtonElement>('download').disabled = false;
  const isOverlay = path.startsWith('/opfs/');
  $<HTMLButtonElement>('write').disabled = !isOverlay;
  $<HTMLButtonElement>('download-overlay').disabled = !isOverlay;
  $<HTMLButtonElement>('readback').disabled = false;
  status(`opened ${path}${isOverlay ? ' (an overlay in OPFS: writes go here and survive reloads)' : ''}`);
  await listOverlays();
}

async function listOverlays(): Promise<void> {
  const list = await call<string[]>('overlays');
  const ul = $('overlays');
  ul.innerHTML = '';
  for (const path of list) {
    const li = document.createElement('li');
    const open = document.createElement('button');
    open.textContent = 'open';
    open.onclick = () => run(() => show(path));
    const del = document.createElement('button');
    del.textContent = 'delete';
    del.onclick = () =>
      run(async () => {
        await call('remove', path);
        await listOverlays();
      });
    li.append(`${path} `, open, ' ', del);
    ul.append(li);
  }
  if (list.length === 0) ul.innerHTML = '<li>none yet</li>';
}

async function run(fn: () => Promise<unknown>): Promise<void> {
  try {
    await fn();
  } catch (err) {
    status(String((err as Error).message ?? err), true);
  }
}

$('files').addEventListener('change', () =>
  run(async () => {
    const files = Array.from($<HTMLInputElement>('files').files ?? []);
    if (files.length === 0) return;
    const paths = await call<string[]>('pick', files);
    // The first file picked is the image; the others are there for it to name as backing files.
    await show(paths[0]!);
  }),
);
$('open-url').addEventListener('click', () =>
  run(() => show(new URL($<HTMLInputElement>('url').value, location.href).href)),
);
$('sample').addEventListener('click', () => run(() => show(new URL('sample/sample.cow', location.href).href)));
$('overlay').addEventListener('click', () =>
  run(async () => {
    if (!current) return;
    const name = `${current
      .split('/')
      .pop()!
      .replace(/\.[^.]*$/, '')}-overlay.cow`;
    const path = await call<string>('createOverlay', current, name);
    await show(path);
  }),
);
$('write').addEventListener('click', () =>
  run(async () => {
    if (!current) return;
    const offset = Number($<HTMLInputElement>('offset').value);
    const n = await call<number>('write', current, offset, $<HTMLInputElement>('text').value);
    await show(current);
    status(`wrote ${n} bytes at ${offset} into ${current}; reload the page and open the overlay again`);
  }),
);
$('readback').addEventListener('click', () =>
  run(async () => {
    if (!current) return;
    const offset = Number($<HTMLInputElement>('offset').value);
    const bytes = await call<number[]>('read', current, offset, 64);
    $('bytes').textContent = new TextDecoder().decode(new Uint8Array(bytes)).replace(/\0/g, '·');
  }),
);
$('download').addEventListener('click', () =>
  run(async () => {
    if (!current) return;
    const name = `${current
      .split('/')
      .pop()!
      .replace(/\.[^.]*$/, '')}-merged.raw`;
    const picker = (window as unknown as { showSaveFilePicker?: (o: unknown) => Promise<FileSystemFileHandle> })
      .showSaveFilePicker;
    if (typeof picker === 'function') {
      // Chromium: the stream goes straight into the file the user chose, one chunk at a time.
      const handle = await picker({ suggestedName: name });
      const writable = await (
        handle as unknown as { createWritable(): Promise<WritableStream<Uint8Array>> }
      ).createWritable();
      const { size, stream } = await call<{ size: number; stream: ReadableStream<Uint8Array> }>('stream', current);
      status(`saving ${human(size)} ...`);
      await stream.pipeTo(writable);
      status(`saved ${name}`);
      return;
    }
    // Elsewhere: the worker streams the merged image into an OPFS file (disk, not memory), and
    // the page downloads that File through a blob: URL (the File is backed by the disk file).
    status('exporting into OPFS ...');
    const { name: file, dir } = await call<{ name: string; dir: string }>('exportToOpfs', current);
    const root = await navigator.storage.getDirectory();
    const blob = await (await (await root.getDirectoryHandle(dir)).getFileHandle(file)).getFile();
    download(blob, name);
    status(`downloading ${name} (${human(blob.size)})`);
  }),
);

$('download-overlay').addEventListener('click', () =>
  run(async () => {
    if (!current?.startsWith('/opfs/')) return;
    // The overlay is a file in OPFS already: its File is backed by the disk, downloaded as it is.
    const names = current
      .split('/')
      .filter((n) => n !== '')
      .slice(1);
    let dir = await navigator.storage.getDirectory();
    for (const n of names.slice(0, -1)) dir = await dir.getDirectoryHandle(n);
    const file = await (await dir.getFileHandle(names[names.length - 1]!)).getFile();
    download(file, names[names.length - 1]!);
    status(`downloading ${names[names.length - 1]} (${human(file.size)})`);
  }),
);

function download(blob: Blob, name: string): void {
  const url = URL.createObjectURL(blob);
  const a = document.createElement('a');
  a.href = url;
  a.download = name;
  a.click();
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
}

void run(listOverlays).then(() => {
  document.body.dataset.ready = '1';
});
