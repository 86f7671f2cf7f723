#!/usr/bin/env node
/**
 * EXPERIMENT (bench/experiments/nbd-sendfile/README.md): bench/lib/nbd-floor-server.mjs with its
 * replies sent by @blk/native's sendv (sendfile(2) on a libuv worker thread) instead of
 * fs.readSync + socket.write, once the handshake is over. --mode copy keeps the floor's path.
 * Everything else below is the floor server's text.
 *
 * The machine's Node floor for serving NBD: the least a Node program must do to serve a file
 * read-only over NBD, with no blk code. Fixed newstyle handshake (NBD_OPT_GO/INFO/EXPORT_NAME and
 * STRUCTURED_REPLY, so that clients do the same work per reply as with blk serve; every other option
 * gets ERR_UNSUP, so no block status), then READ answered by one fs.readSync into the reply buffer
 * (one OFFSET_DATA chunk with DONE once structured replies are agreed), FLUSH and DISC; replies of
 * one incoming chunk are corked into one writev. No promises, no per-request objects beyond the
 * reply buffer.
 *
 * It is a bench baseline, not a server: it checks nothing a hostile client could exploit beyond
 * what keeps the measurement honest (reads past the end get EINVAL).
 *
 *   node bench/lib/nbd-floor-server.mjs [--mode sendfile|copy] [--multi-conn] SOCKET FILE
 */
import * as fs from 'node:fs';
import * as net from 'node:net';
import { createRequire } from 'node:module';

const addon = createRequire(import.meta.url)('../../../packages/native/build/Release/blk_native.node');

const args = process.argv.slice(2);
let mode = 'sendfile';
if (args[0] === '--mode') {
  mode = args[1];
  args.splice(0, 2);
}
const multiConn = args[0] === '--multi-conn';
if (multiConn) args.shift();
const [sockPath, file] = args;
if (!sockPath || !file) {
  process.stderr.write('usage: nbd-floor-server.mjs [--mode sendfile|copy] [--multi-conn] SOCKET FILE\n');
  process.exit(2);
}

const fd = fs.openSync(file, 'r');
const size = BigInt(fs.fstatSync(fd).size);

const IHAVEOPT = 0x49484156454f5054n;
const REPLY_MAGIC = 0x3e889045565a9n;
const REQUEST_MAGIC = 0x25609513;
const SIMPLE_REPLY_MAGIC = 0x67446698;
const OPT = { EXPORT_NAME: 1, ABORT: 2, INFO: 6, GO: 7, STRUCTURED_REPLY: 8 };
const STRUCTURED_REPLY_MAGIC = 0x668e33ef;
const REP_ACK = 1;
const REP_INFO = 3;
const REP_ERR_UNSUP = 0x80000001;
const EINVAL = 22;
// HAS_FLAGS | READ_ONLY | SEND_FLUSH, plus CAN_MULTI_CONN when asked (as blk serve -e N announces it).
const TFLAGS = 1 | 2 | 4 | (multiConn ? 1 << 8 : 0);

function optionReply(sock, opt, type, data = Buffer.alloc(0)) {
  const h = Buffer.alloc(20);
  h.writeBigUInt64BE(REPLY_MAGIC, 0);
  h.writeUInt32BE(opt, 8);
  h.writeUInt32BE(type, 12);
  h.writeUInt32BE(data.length, 16);
  sock.write(Buffer.concat([h, data]));
}

function serve(sock) {
  let pending = Buffer.alloc(0);
  let phase = 'flags'; // flags -> options -> transmission
  let noZeroes = false;
  let structured = false;
  // sendfile path: replies gathered into a plan (fd, position, length triples; fd -1 = bytes of `mem`)
  // and handed to one worker job at a time.
  let busy = false;
  let plan = [];
  let mem = [];
  let memBytes = 0;
  const sockFd = () => sock._handle.fd;
  function queueMem(b) {
    plan.push(-1, memBytes, b.length);
    mem.push(b);
    memBytes += b.length;
  }
  /** A reply's bytes: through the plan on the sendfile path, so that they keep their order. */
  function out(b) {
    if (mode === 'sendfile') queueMem(b);
    else sock.write(b);
  }
  function flushPlan() {
    if (busy || plan.length === 0) return;
    if (sock.writableLength !== 0) {
      sock.once('drain', flushPlan);
      return;
    }
    const data = mem.length === 1 ? mem[0] : Buffer.concat(mem, memBytes);
    const p = Float64Array.from(plan);
    plan = [];
    mem = [];
    memBytes = 0;
    busy = true;
    addon.sendv(sockFd(), data, p, (err) => {
      busy = false;
      if (err !== 0) {
        sock.destroy();
        return;
      }
      flushPlan();
    });
  }
  const hello = Buffer.alloc(18);
  hello.write('NBDMAGIC', 0, 'latin1');
  hello.writeBigUInt64BE(IHAVEOPT, 8);
  hello.writeUInt16BE(3, 16); // FIXED_NEWSTYLE | NO_ZEROES
  sock.write(hello);

  /** Handles one option; returns false when the connection is over. */
  function option(opt, data) {
    if (opt === OPT.GO || opt === OPT.INFO) {
      const info = Buffer.alloc(12);
      info.writeUInt16BE(0, 0); // NBD_INFO_EXPORT
      info.writeBigUInt64BE(size, 2);
      info.writeUInt16BE(TFLAGS, 10);
      optionReply(sock, opt, REP_INFO, info);
      optionReply(sock, opt, REP_ACK);
      if (opt === OPT.GO) phase = 'transmission';
    } else if (opt === OPT.EXPORT_NAME) {
      const b = Buffer.alloc(noZeroes ? 10 : 134);
      b.writeBigUInt64BE(size, 0);
      b.writeUInt16BE(TFLAGS, 8);
      sock.write(b);
      phase = 'transmission';
    } else if (opt === OPT.STRUCTURED_REPLY) {
      structured = true;
      optionReply(sock, opt, REP_ACK);
    } else if (opt === OPT.ABORT) {
      optionReply(sock, opt, REP_ACK);
      sock.end();
      return false;
    } else {
      optionReply(sock, opt, REP_ERR_UNSUP);
    }
    void data;
    return true;
  }

  /** A read's reply with room for `length` bytes of data after its header, and where that data starts. */
  function readReply(handleHi, handleLo, offset, length) {
    if (!structured) return [reply(handleHi, handleLo, 0, length), 16];
    const b = Buffer.allocUnsafe(28 + length);
    b.writeUInt32BE(STRUCTURED_REPLY_MAGIC, 0);
    b.writeUInt16BE(1, 4); // NBD_REPLY_FLAG_DONE
    b.writeUInt16BE(1, 6); // NBD_REPLY_TYPE_OFFSET_DATA
    b.writeUInt32BE(handleHi, 8);
    b.writeUInt32BE(handleLo, 12);
    b.writeUInt32BE(8 + length, 16);
    b.writeBigUInt64BE(offset, 20);
    return [b, 28];
  }

  /** A simple reply (errors are simple replies in both modes: the spec allows it for any request). */
  function reply(handleHi, handleLo, error, length) {
    const b = Buffer.allocUnsafe(16 + length);
    b.writeUInt32BE(SIMPLE_REPLY_MAGIC, 0);
    b.writeUInt32BE(error, 4);
    b.writeUInt32BE(handleHi, 8);
    b.writeUInt32BE(handleLo, 12);
    return b;
  }

  sock.on('data', (chunk) => {
    pending = pending.length === 0 ? chunk : Buffer.concat([pending, chunk]);
    let p = 0;
    sock.cork();
    try {
      for (;;) {
        const left = pending.length - p;
        if (phase === 'flags') {
          if (left < 4) break;
          noZeroes = (pending.readUInt32BE(p) & 2) !== 0;
          p += 4;
          phase = 'options';
        } else if (phase === 'options') {
          if (left < 16) break;
          const len = pending.readUInt32BE(p + 12);
          if (left < 16 + len) break;
          const opt = pending.readUInt32BE(p + 8);
          const data = pending.subarray(p + 16, p + 16 + len);
          p += 16 + len;
          if (!option(opt, data)) return;
        } else {
          if (left < 28) break;
          if (pending.readUInt32BE(p) !== REQUEST_MAGIC) {
            sock.destroy();
            return;
          }
          const type = pending.readUInt16BE(p + 6);
          const hHi = pending.readUInt32BE(p + 8);
          const hLo = pending.readUInt32BE(p + 12);
          const offset = pending.readBigUInt64BE(p + 16);
          const length = pending.readUInt32BE(p + 24);
          if (type === 1) {
            // WRITE to a read-only export: skip its payload once it is all here.
            if (left < 28 + length) break;
            p += 28 + length;
            out(reply(hHi, hLo, 1 /* EPERM */, 0));
            continue;
          }
          p += 28;
          if (type === 0) {
            if (offset + BigInt(length) > size) {
              out(reply(hHi, hLo, EINVAL, 0));
              continue;
            }
            if (mode === 'sendfile') {
              const [b, at] = readReply(hHi, hLo, offset, 0);
              const h = structured ? b.subarray(0, at) : b;
              if (structured) h.writeUInt32BE(8 + length, 16);
              queueMem(h);
              plan.push(fd, Number(offset), length);
              continue;
            }
            const [b, at] = readReply(hHi, hLo, offset, length);
            fs.readSync(fd, b, at, length, Number(offset));
            sock.write(b);
          } else if (type === 2) {
            sock.end();
            return;
          } else if (type === 3) {
            out(reply(hHi, hLo, 0, 0));
          } else {
            out(reply(hHi, hLo, EINVAL, 0));
          }
        }
      }
    } finally {
      pending = p === pending.length ? Buffer.alloc(0) : pending.subarray(p);
      sock.uncork();
      flushPlan();
    }
  });
  sock.on('error', () => {});
}

fs.rmSync(sockPath, { force: true });
const server = net.createServer(serve);
server.listen(sockPath);
const stop = () => {
  server.close();
  fs.rmSync(sockPath, { force: true });
  process.exit(0);
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
