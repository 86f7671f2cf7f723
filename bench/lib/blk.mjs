// Loads the BUILT blk packages. @blk/images (every format) when it is built;
// before @blk/cow lands, @blk/core + @blk/raw only (raw rows still run).
import * as fs from 'node:fs';
import { fileURLToPath, pathToFileURL } from 'node:url';

export const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const dist = (pkg, file = 'index.js') => `${ROOT}packages/${pkg}/dist/${file}`;

export const CLI = dist('cli', 'blk.js');

export function available() {
  return {
    core: fs.existsSync(dist('core')),
    raw: fs.existsSync(dist('raw')),
    cow: fs.existsSync(dist('cow')) && fs.existsSync(dist('images')),
    cli: fs.existsSync(CLI),
  };
}

let loaded;
/** { openImage, createImage, NodeVfs, hasCow } */
export async function loadBlk() {
  if (loaded) return loaded;
  if (available().cow) {
    const m = await import(pathToFileURL(dist('images')).href);
    // As the blk command does: the libraries read no environment variable, so the bench (a program)
    // turns BLK_NATIVE_IO=off (the rand-read-fs-qd1 row) and BLK_LOCK into host options.
    const off = (v) => v !== undefined && ['off', '0', 'false'].includes(v.toLowerCase());
    const options = {};
    if (off(process.env.BLK_NATIVE_IO)) options.nativeIo = false;
    const lock = process.env.BLK_LOCK;
    if (lock !== undefined) options.lock = off(lock) ? 'off' : lock.toLowerCase() === 'require' ? 'require' : 'on';
    const host = m.createHost(options);
    loaded = {
      openImage: (p, o) => host.openImage(p, o),
      createImage: (p, o) => host.createImage(p, o),
      NodeVfs: m.NodeVfs,
      hasCow: true,
    };
  } else {
    const core = await import(pathToFileURL(dist('core')).href);
    const { rawDriver } = await import(pathToFileURL(dist('raw')).href);
    const registry = new core.DriverRegistry([rawDriver]);
    loaded = {
      openImage: (p, o = {}) => core.openImage(p, { registry, ...o }),
      createImage: (p, o) => core.createImage(p, { registry, ...o }),
      NodeVfs: core.NodeVfs,
      hasCow: false,
    };
  }
  return loaded;
}
