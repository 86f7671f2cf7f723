/**
 * blk serve: qemu-nbd. Serves one image (FILE), or several (--export, --exports-file), as NBD exports
 * over a Unix socket or TCP, with TLS (--object tls-creds-*, --tls-creds), until the last client leaves
 * (or, with -t, until SIGINT/SIGTERM/SIGHUP).
 */
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as nodePath from 'node:path';
import type { Image } from '@blk/core';
import {
  checkExports,
  type ExportSpec,
  ExportSpecError,
  type NbdExport,
  parseExportSpec,
  parseExportsConfig,
} from '@blk/nbd';
import { NbdServer, nodeTls } from '@blk/nbd/node';
import { rulesOf, type BackingRuleFlags } from '../common.js';
import { UsageError, warn } from '../errors.js';
import { hostServeVfs } from '../host-io.js';
import { hostSocketSender, openImage } from '../images.js';
import { cliOpenOptions } from '../jobs/common.js';
import { printable } from '../printable.js';
import { type TlsFlags, tlsOf } from './serve-objects.js';

export interface ServeOpts extends BackingRuleFlags, TlsFlags {
  format?: string;
  readOnly?: boolean;
  exportName?: string;
  description?: string;
  export?: string[];
  exportsFile?: string;
  socket?: string;
  bind?: string;
  port?: string;
  persistent?: boolean;
  shared?: string;
  pidFile?: string;
  handshakeLimit?: string;
  forceShare?: boolean;
  fork?: boolean;
  verbose?: boolean;
  quiet?: boolean;
}

/** Set in the server process `--fork` starts: the fd on which it reports readiness to its parent. */
const READY_FD_ENV = 'BLK_SERVE_READY_FD';

function positiveInt(value: string, what: string, min: number, max: number): number {
  const n = Number(value);
  if (!/^\d+$/.test(value) || !Number.isSafeInteger(n) || n < min || n > max) {
    throw new UsageError(`invalid ${what} '${value}' (expected ${min}-${max})`);
  }
  return n;
}

/** The exports the command line names, in order: FILE (as -x/-D say), then --export, then --exports-file. */
function exportSpecs(file: string | undefined, opts: ServeOpts): ExportSpec[] {
  const specs: ExportSpec[] = [];
  if (file !== undefined) {
    specs.push({ name: opts.exportName ?? '', file, description: opts.description });
  } else if (opts.exportName !== undefined || opts.description !== undefined) {
    throw new UsageError('-x and -D describe the export of FILE; with --export, give name and description there');
  }
  try {
    for (const e of opts.export ?? []) specs.push(parseExportSpec(e));
    if (opts.exportsFile !== undefined) {
      const where = opts.exportsFile;
      const st = fs.statSync(where, { throwIfNoEntry: false });
      if (!st?.isFile()) throw new UsageError(`${where}: not a regular file`);
      if (st.size > 1024 * 1024) throw new UsageError(`${where}: larger than 1 MiB`);
      let json: unknown;
      try {
        json = JSON.parse(fs.readFileSync(where, 'utf8'));
      } catch (e) {
        throw new UsageError(`${where}: not JSON (${(e as Error).message})`);
      }
      const base = nodePath.dirname(nodePath.resolve(where));
      specs.push(...parseExportsConfig(json, where, (f) => nodePath.resolve(base, f)));
    }
    if (specs.length === 0) throw new UsageError('nothing to serve: give FILE, --export or --exports-file');
    checkExports(specs);
  } catch (e) {
    if (e instanceof ExportSpecError) throw new UsageError(e.message);
    throw e;
  }
  return specs;
}

/**
 * --fork: runs the server as a detached process and returns once it accepts clients (0), or with its exit
 * status when it fails before that (its messages are on the same stderr). As qemu-nbd --fork: the server's
 * stdin and stdout are /dev/null, its stderr stays the caller's.
 */
async function forkServer(): Promise<number> {
  const child = spawn(process.execPath, [...process.execArgv, ...process.argv.slice(1)], {
    detached: true,
    stdio: ['ignore', 'ignore', 'inherit', 'pipe'],
    env: { ...process.env, [READY_FD_ENV]: '3' },
  });
  const channel = child.stdio[3] as NodeJS.ReadableStream & { destroy(): void };
  const exit = new Promise<number>((resolve) => {
    child.once('exit', (code, signal) => resolve(code ?? (signal ? 128 : 1)));
    child.once('error', () => resolve(1));
  });
  let said = '';
  const ready = await new Promise<boolean>((resolve) => {
    channel.on('data', (b: Buffer) => {
      said += b.toString('latin1');
      if (said.includes('ready')) resolve(true);
    });
    channel.once('end', () => resolve(said.includes('ready')));
    channel.once('error', () => resolve(false));
  });
  channel.destroy();
  if (ready) {
    child.unref();
    return 0;
  }
  const code = await exit;
  return code === 0 ? 1 : code;
}

/**
 * Writes the pid file atomically: a fresh temporary file (O_EXCL: never through a symlink planted at its
 * name) renamed over FILE (which replaces a symlink at FILE rather than writing where it points).
 */
function writePidFile(file: string): void {
  const tmp = `${file}.tmp`;
  fs.rmSync(tmp, { force: true });
  const fd = fs.openSync(tmp, 'wx', 0o644);
  try {
    fs.writeSync(fd, `${process.pid}\n`);
  } finally {
    fs.closeSync(fd);
  }
  fs.renameSync(tmp, file);
}

/** Removes the pid file if it still names this process (another server may have taken it over). */
function removePidFile(file: string): void {
  try {
    if (fs.readFileSync(file, 'utf8').trim() === String(process.pid)) fs.rmSync(file);
  } catch {
    // Gone already.
  }
}

export async function serve(file: string | undefined, opts: ServeOpts): Promise<number> {
  const readyFdText = process.env[READY_FD_ENV];
  delete process.env[READY_FD_ENV];
  if (opts.fork && readyFdText === undefined) return forkServer();
  // Only the fd --fork set up (3), nothing an environment could point at stdout or stderr.
  const readyFd = readyFdText === '3' ? 3 : undefined;
  if (readyFdText !== undefined && readyFd === undefined)
    throw new UsageError(`${READY_FD_ENV} is for blk serve --fork only`);

  if (opts.socket !== undefined && (opts.bind !== undefined || opts.port !== undefined)) {
    throw new UsageError('-k cannot be combined with -b or -p');
  }
  if (opts.verbose && opts.quiet) throw new UsageError('-v and -q contradict each other');
  const port = opts.port !== undefined ? positiveInt(opts.port, 'port', 0, 65535) : 10809;
  const shared = opts.shared !== undefined ? positiveInt(opts.shared, 'shared client count', 1, 1024) : 1;
  const handshakeLimit =
    opts.handshakeLimit !== undefined ? positiveInt(opts.handshakeLimit, 'handshake limit', 0, 86400) : 10;
  const specs = exportSpecs(file, opts);
  const tls = tlsOf(opts);
  // A log line to a stderr that went away (a --fork caller's pipe closed) must not end the server.
  process.stderr.on('error', () => undefined);
  const log = (level: 'error' | 'info', message: string) => {
    if (opts.quiet || (level === 'info' && !opts.verbose)) return;
    process.stderr.write(`blk serve: ${printable(message)}\n`);
  };

  const images: Image[] = [];
  const closeImages = async () => {
    for (const image of images.splice(0).reverse()) {
      try {
        await image.close(); // flushes a writable image first
      } catch (e) {
        log('error', `closing an image failed: ${(e as Error).message}`);
      }
    }
  };
  const exports: NbdExport[] = [];
  let server: NbdServer;
  try {
    for (const spec of specs) {
      // Large reads and writes and every flush run on the thread pool (hostServeVfs): the event loop keeps answering.
      const image = await openImage(spec.file, {
        ...cliOpenOptions({
          onWarning: warn,
          format: spec.format ?? opts.format,
          readOnly: opts.readOnly === true || spec.readOnly === true,
          forceShare: opts.forceShare,
          ...rulesOf(opts),
        }),
        vfs: hostServeVfs(),
      });
      images.push(image);
      exports.push({ name: spec.name, description: spec.description, image });
    }
    server = await NbdServer.listen({
      exports,
      socket: opts.socket,
      host: opts.socket === undefined ? (opts.bind ?? '0.0.0.0') : undefined,
      port: opts.socket === undefined ? port : undefined,
      shared,
      persistent: opts.persistent === true,
      handshakeTimeoutMs: handshakeLimit * 1000,
      tls: tls !== undefined ? nodeTls(tls) : undefined,
      // Large reads of raw data by sendfile from a worker thread on plain connections (about 2x
      // the MiB/s of reading and writing them on the main thread here; BLK_NATIVE_IO=off: not).
      zeroCopy: hostSocketSender(),
      log,
    });
  } catch (e) {
    await closeImages();
    throw e;
  }
  let signals = 0;
  const stop = (signal: NodeJS.Signals) => {
    signals++;
    if (signals === 1) {
      log('info', `${signal}: shutting down (in-flight requests finish; again to cut them off)`);
      void server.close();
    } else server.abort();
  };
  const SIGNALS: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];
  for (const s of SIGNALS) process.on(s, stop);
  let pidWritten = false;
  try {
    // Readiness: the pid file appears (and a --fork parent returns) once clients can connect.
    if (opts.pidFile !== undefined) {
      writePidFile(opts.pidFile);
      pidWritten = true;
    }
    if (readyFd !== undefined) {
      try {
        fs.writeSync(readyFd, 'ready\n');
        fs.closeSync(readyFd);
      } catch {
        // The parent is gone; serve anyway.
      }
    }
    const where = opts.socket ?? `${opts.bind ?? '0.0.0.0'}:${server.port ?? port}`;
    log('info', `serving ${exports.map((e) => `'${e.name}'`).join(', ')} on ${where}${tls ? ' (TLS required)' : ''}`);
  } catch (e) {
    await server.close();
    for (const s of SIGNALS) process.off(s, stop);
    await closeImages();
    throw e;
  }
  try {
    await server.closed;
  } finally {
    await closeImages();
    for (const s of SIGNALS) process.off(s, stop);
    if (pidWritten && opts.pidFile !== undefined) removePidFile(opts.pidFile);
  }
  return 0;
}
