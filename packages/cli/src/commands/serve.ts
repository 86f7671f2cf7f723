/** blk serve: qemu-nbd (serves one image as one NBD export). */
import * as fs from 'node:fs';
import { NbdServer } from '@blk/nbd/node';
import { rulesOf, type BackingRuleFlags } from '../common.js';
import { UsageError, warn } from '../errors.js';
import { hostServeVfs } from '../host-io.js';
import { openImage } from '../images.js';
import { cliOpenOptions } from '../jobs/common.js';

export interface ServeOpts extends BackingRuleFlags {
  format?: string;
  readOnly?: boolean;
  exportName?: string;
  description?: string;
  socket?: string;
  bind?: string;
  port?: string;
  persistent?: boolean;
  shared?: string;
  pidFile?: string;
  handshakeLimit?: string;
  forceShare?: boolean;
}

function positiveInt(value: string, what: string, min: number, max: number): number {
  const n = Number(value);
  if (!/^\d+$/.test(value) || !Number.isSafeInteger(n) || n < min || n > max) {
    throw new UsageError(`invalid ${what} '${value}' (expected ${min}-${max})`);
  }
  return n;
}

export async function serve(file: string, opts: ServeOpts): Promise<number> {
  if (opts.socket !== undefined && (opts.bind !== undefined || opts.port !== undefined)) {
    throw new UsageError('-k cannot be combined with -b or -p');
  }
  const port = opts.port !== undefined ? positiveInt(opts.port, 'port', 0, 65535) : 10809;
  const shared = opts.shared !== undefined ? positiveInt(opts.shared, 'shared client count', 1, 1024) : 1;
  const handshakeLimit =
    opts.handshakeLimit !== undefined ? positiveInt(opts.handshakeLimit, 'handshake limit', 0, 86400) : 10;
  const image = await openImage(file, {
    ...cliOpenOptions({
      onWarning: warn,
      format: opts.format,
      readOnly: opts.readOnly === true,
      forceShare: opts.forceShare,
      ...rulesOf(opts),
    }),
    vfs: hostServeVfs(),
  });
  let server: NbdServer;
  try {
    server = await NbdServer.listen({
      exports: [{ name: opts.exportName ?? '', description: opts.description, image }],
      socket: opts.socket,
      host: opts.socket === undefined ? (opts.bind ?? '0.0.0.0') : undefined,
      port: opts.socket === undefined ? port : undefined,
      shared,
      persistent: opts.persistent === true,
      handshakeTimeoutMs: handshakeLimit * 1000,
    });
  } catch (e) {
    await image.close();
    throw e;
  }
  const stop = () => void server.close();
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  // Readiness: the pid file appears once clients can connect.
  if (opts.pidFile !== undefined) {
    fs.writeFileSync(`${opts.pidFile}.tmp`, `${process.pid}\n`);
    fs.renameSync(`${opts.pidFile}.tmp`, opts.pidFile);
  }
  try {
    await server.closed;
  } finally {
    process.off('SIGINT', stop);
    process.off('SIGTERM', stop);
    if (opts.pidFile !== undefined) fs.rmSync(opts.pidFile, { force: true });
    await image.close(); // flushes a writable image first
  }
  return 0;
}
