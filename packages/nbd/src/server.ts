/**
 * The NBD server logic over a byte stream: the fixed newstyle handshake and the transmission
 * phase for one connection. Portable: no Node built-ins; src/node.ts binds it to sockets.
 */
import type { Image } from '@blk/core/portable';
import {
  ALLOCATION_DEPTH,
  BASE_ALLOCATION,
  CLIENT_FLAGS_KNOWN,
  concat,
  decodeOptionHeader,
  encodeGreeting,
  encodeOptionReply,
  encoder,
  FLAG_NO_ZEROES,
  INFO,
  MAX_OPTION_LENGTH,
  MAX_STRING,
  OPT,
  OptionInvalid,
  OptionReader,
  ProtocolError,
  REP,
  u16,
  u32,
  u64,
  view,
} from './protocol.js';
import {
  blockSizes,
  type ByteStream,
  Transmission,
  type TransmissionOptions,
  transmissionFlags,
} from './transmission.js';

export { blockSizes, type ByteStream, transmissionFlags } from './transmission.js';

export interface NbdExport {
  /** The export name ('' is the default export). */
  name: string;
  description?: string;
  image: Image;
}

export interface ConnectionOptions extends TransmissionOptions {
  /** Milliseconds the client has to reach transmission (default 10 s; 0: no limit). */
  handshakeTimeoutMs?: number;
  /** Timer functions (defaults: the global ones). */
  setTimer?: (fn: () => void, ms: number) => unknown;
  clearTimer?: (handle: unknown) => void;
}

interface Negotiated {
  structured: boolean;
  /** Selected meta contexts, by id (index + 1). */
  contexts: string[];
  contextExport: string | undefined;
}

/** One client connection: handshake, then transmission, until it disconnects. */
export class NbdConnection {
  private readonly neg: Negotiated = { structured: false, contexts: [], contextExport: undefined };
  private noZeroes = false;
  private closed = false;

  constructor(
    private readonly stream: ByteStream,
    private readonly exports: readonly NbdExport[],
    private readonly options: ConnectionOptions = {},
  ) {}

  /** Runs the connection to its end; resolves (never rejects) once the stream is closed. */
  async run(): Promise<void> {
    const setTimer = this.options.setTimer ?? ((fn, ms) => setTimeout(fn, ms));
    const clearTimer = this.options.clearTimer ?? ((h) => clearTimeout(h as ReturnType<typeof setTimeout>));
    const limit = this.options.handshakeTimeoutMs ?? 10_000;
    const timer = limit > 0 ? setTimer(() => this.close(), limit) : undefined;
    try {
      const exp = await this.handshake();
      if (timer !== undefined) clearTimer(timer);
      if (exp) {
        const contexts = this.neg.contextExport === exp.name ? this.neg.contexts : [];
        await new Transmission(
          this.stream,
          exp.image,
          { structured: this.neg.structured, contexts },
          this.options,
        ).run();
      }
    } catch {
      // A protocol violation or a broken stream: drop the connection.
    } finally {
      if (timer !== undefined) clearTimer(timer);
      this.close();
    }
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.stream.close();
  }

  private async read(n: number): Promise<Uint8Array> {
    const b = await this.stream.readExactly(n);
    if (b === null) throw new ProtocolError('end of stream');
    return b;
  }

  private find(name: string): NbdExport | undefined {
    return this.exports.find((e) => e.name === name);
  }

  private reply(option: number, type: number, data?: Uint8Array): Promise<void> {
    return this.stream.write(encodeOptionReply(option, type, data));
  }

  private replyError(option: number, type: number, message: string): Promise<void> {
    return this.reply(option, type, encoder.encode(message.slice(0, 1024)));
  }

  /** The fixed newstyle handshake; resolves with the export to serve, or undefined (aborted). */
  async handshake(): Promise<NbdExport | undefined> {
    await this.stream.write(encodeGreeting());
    const clientFlags = view(await this.read(4)).getUint32(0);
    if ((clientFlags & ~CLIENT_FLAGS_KNOWN) !== 0) throw new ProtocolError('unknown client flags');
    this.noZeroes = (clientFlags & FLAG_NO_ZEROES) !== 0;
    for (;;) {
      const { option, length } = decodeOptionHeader(await this.read(16));
      if (length > MAX_OPTION_LENGTH) {
        // Bounded: a payload up to 64 KiB is read and thrown away (the client stays in step); a longer one
        // drops the connection without reading it.
        if (length > 16 * MAX_OPTION_LENGTH) throw new ProtocolError('option too long');
        await this.read(length);
        await this.replyError(option, REP.ERR_TOO_BIG, 'option too long');
        continue;
      }
      const data = length > 0 ? await this.read(length) : new Uint8Array(0);
      try {
        const done = await this.option(option, data);
        if (done !== null) return done;
      } catch (e) {
        if (!(e instanceof OptionInvalid)) throw e;
        await this.replyError(option, REP.ERR_INVALID, e.message);
      }
    }
  }

  /** One option: null to go on negotiating, an export to enter transmission, undefined to end. */
  private async option(option: number, data: Uint8Array): Promise<NbdExport | undefined | null> {
    switch (option) {
      case OPT.EXPORT_NAME: {
        const name = new OptionReader(data).string(data.length);
        const exp = this.find(name);
        if (!exp) throw new ProtocolError('no such export'); // the protocol's only answer: close
        const parts = [u64(exp.image.size), u16(transmissionFlags(exp.image, this.neg.structured))];
        if (!this.noZeroes) parts.push(new Uint8Array(124));
        await this.stream.write(concat(parts));
        return exp;
      }
      case OPT.ABORT:
        await this.reply(option, REP.ACK).catch(() => undefined);
        return undefined;
      case OPT.LIST: {
        if (data.length !== 0) throw new OptionInvalid('NBD_OPT_LIST takes no data');
        for (const e of this.exports) {
          const name = encoder.encode(e.name);
          const description = encoder.encode(e.description ?? '').subarray(0, MAX_STRING);
          await this.reply(option, REP.SERVER, concat([u32(name.length), name, description]));
        }
        await this.reply(option, REP.ACK);
        return null;
      }
      case OPT.INFO:
      case OPT.GO: {
        const r = new OptionReader(data);
        const name = r.string();
        const n = r.u16();
        const wanted: number[] = [];
        for (let i = 0; i < n; i++) wanted.push(r.u16());
        if (r.remaining !== 0) throw new OptionInvalid('trailing data');
        const exp = this.find(name);
        if (!exp) {
          await this.replyError(option, REP.ERR_UNKNOWN, `export '${name}' not present`);
          return null;
        }
        const image = exp.image;
        await this.reply(
          option,
          REP.INFO,
          concat([u16(INFO.EXPORT), u64(image.size), u16(transmissionFlags(image, this.neg.structured))]),
        );
        if (wanted.includes(INFO.NAME)) {
          await this.reply(option, REP.INFO, concat([u16(INFO.NAME), encoder.encode(exp.name)]));
        }
        if (wanted.includes(INFO.DESCRIPTION) && exp.description !== undefined) {
          const d = encoder.encode(exp.description).subarray(0, MAX_STRING);
          await this.reply(option, REP.INFO, concat([u16(INFO.DESCRIPTION), d]));
        }
        // Sent whether asked or not (as qemu-nbd): the client learns the preferred and largest sizes.
        const [min, pref, max] = blockSizes(image, this.options.maxRequest);
        await this.reply(option, REP.INFO, concat([u16(INFO.BLOCK_SIZE), u32(min), u32(pref), u32(max)]));
        await this.reply(option, REP.ACK);
        if (option === OPT.GO) return exp;
        return null;
      }
      case OPT.STRUCTURED_REPLY:
        if (data.length !== 0) throw new OptionInvalid('NBD_OPT_STRUCTURED_REPLY takes no data');
        this.neg.structured = true;
        await this.reply(option, REP.ACK);
        return null;
      case OPT.LIST_META_CONTEXT:
      case OPT.SET_META_CONTEXT:
        await this.metaContext(option, data);
        return null;
      default:
        await this.replyError(option, REP.ERR_UNSUP, `option ${option} not supported`);
        return null;
    }
  }

  private async metaContext(option: number, data: Uint8Array): Promise<void> {
    const set = option === OPT.SET_META_CONTEXT;
    if (!this.neg.structured) {
      await this.replyError(option, REP.ERR_INVALID, 'structured replies were not negotiated');
      return;
    }
    const r = new OptionReader(data);
    const name = r.string();
    const n = r.u32();
    const queries: string[] = [];
    for (let i = 0; i < n; i++) queries.push(r.string());
    if (r.remaining !== 0) throw new OptionInvalid('trailing data');
    if (!this.find(name)) {
      await this.replyError(option, REP.ERR_UNKNOWN, `export '${name}' not present`);
      return;
    }
    const available = [BASE_ALLOCATION, ALLOCATION_DEPTH];
    const chosen: string[] = [];
    const add = (c: string) => {
      if (!chosen.includes(c)) chosen.push(c);
    };
    if (queries.length === 0 && !set) available.forEach(add);
    for (const q of queries) {
      if (available.includes(q)) add(q);
      else if (!set && (q === 'base:' || q === 'qemu:')) for (const a of available) if (a.startsWith(q)) add(a);
    }
    if (set) {
      this.neg.contexts = chosen;
      this.neg.contextExport = name;
    }
    for (const c of chosen) {
      const id = set ? chosen.indexOf(c) + 1 : 0;
      await this.reply(option, REP.META_CONTEXT, concat([u32(id), encoder.encode(c)]));
    }
    await this.reply(option, REP.ACK);
  }
}
