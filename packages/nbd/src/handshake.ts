/**
 * The option-haggling phase of the fixed newstyle handshake (doc/proto.md "Option haggling"): greeting,
 * client flags, then options until the client picks an export (GO / EXPORT_NAME) or leaves (ABORT).
 * Portable: no Node built-ins.
 */
import {
  ALLOCATION_DEPTH,
  BASE_ALLOCATION,
  CLIENT_FLAGS_KNOWN,
  concat,
  decodeOptionHeader,
  encodeGreeting,
  encodeOptionReply,
  encoder,
  FLAG_FIXED_NEWSTYLE,
  FLAG_NO_ZEROES,
  INFO,
  MAX_OPTION_LENGTH,
  MAX_STRING,
  OPT,
  OptionInvalid,
  OptionReader,
  ProtocolError,
  REP,
  TFLAG,
  u16,
  u32,
  u64,
  view,
} from './protocol.js';
import type { NbdExport } from './server.js';
import { blockSizes, type ByteStream, transmissionFlags } from './transmission.js';

/**
 * STARTTLS for a connection (the portable part knows no TLS library: @blk/nbd/node supplies Node's).
 * `upgrade` is called once the server has accepted NBD_OPT_STARTTLS: it must stop reading plaintext,
 * refuse (reject) if the client already sent bytes behind the option (they would be plaintext injected
 * into the TLS session, CVE-2021-3716), write `ack` in plaintext, run the TLS server handshake and
 * resolve with the encrypted stream; it rejects when the handshake fails (the connection is dropped).
 */
export interface TlsUpgrade {
  /** 'require' (qemu-nbd with --tls-creds; the default): nothing but STARTTLS and ABORT before TLS. 'allow': TLS optional. */
  mode?: 'require' | 'allow';
  upgrade(stream: ByteStream, ack: Uint8Array): Promise<ByteStream & { readonly tlsSummary?: string }>;
}

/** How a connection reports what happens to it: 'error' for failures, 'info' for the normal course. */
export type ConnectionLog = (level: 'error' | 'info', message: string) => void;

export interface HandshakeOptions {
  /** STARTTLS support; without it STARTTLS gets NBD_REP_ERR_POLICY. */
  tls?: TlsUpgrade;
  log?: ConnectionLog;
  /** The largest READ/WRITE payload, announced in NBD_INFO_BLOCK_SIZE (TransmissionOptions.maxRequest). */
  maxRequest?: number;
}

/** What the handshake settled that the transmission phase depends on. */
export interface Negotiated {
  structured: boolean;
  /** Selected meta contexts, by id (index + 1). */
  contexts: string[];
  contextExport: string | undefined;
}

/** The export a client chose, and what was negotiated for it. */
export interface HandshakeResult {
  export: NbdExport;
  negotiated: Negotiated;
  /** The stream to go on with: the TLS stream after STARTTLS. */
  stream: ByteStream;
  tls: boolean;
}

/** The transmission flags an export is announced with. */
export function exportFlags(exp: NbdExport, structured: boolean): number {
  const f = transmissionFlags(exp.image, structured);
  return exp.multiConn === false ? f & ~TFLAG.CAN_MULTI_CONN : f;
}

/** One client's option haggling over `stream`. */
export class Handshake {
  private neg: Negotiated = { structured: false, contexts: [], contextExport: undefined };
  private noZeroes = false;
  private fixed = false;
  private tlsDone = false;
  /** The current stream (replaced by the TLS stream after STARTTLS). */
  stream: ByteStream;

  constructor(
    stream: ByteStream,
    private readonly exports: readonly NbdExport[],
    private readonly options: HandshakeOptions = {},
  ) {
    this.stream = stream;
  }

  /** TLS is required and not yet in place. */
  private get tlsPending(): boolean {
    return this.options.tls !== undefined && (this.options.tls.mode ?? 'require') === 'require' && !this.tlsDone;
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

  /** Runs the handshake; resolves with the export to serve, or undefined (aborted). Throws ProtocolError. */
  async run(): Promise<HandshakeResult | undefined> {
    await this.stream.write(encodeGreeting());
    const clientFlags = view(await this.read(4)).getUint32(0);
    if ((clientFlags & ~CLIENT_FLAGS_KNOWN) !== 0) throw new ProtocolError('unknown client flags');
    this.noZeroes = (clientFlags & FLAG_NO_ZEROES) !== 0;
    this.fixed = (clientFlags & FLAG_FIXED_NEWSTYLE) !== 0;
    for (;;) {
      const { option, length } = decodeOptionHeader(await this.read(16));
      if (length > MAX_OPTION_LENGTH) {
        // Bounded (CVE-2017-15119): a payload up to 1 MiB is read in pieces and thrown away (the client stays
        // in step); a longer one drops the connection without reading it.
        if (length > 16 * MAX_OPTION_LENGTH) throw new ProtocolError(`option ${option} of ${length} bytes`);
        for (let left = length; left > 0; left -= MAX_OPTION_LENGTH) await this.read(Math.min(left, MAX_OPTION_LENGTH));
        await this.replyError(option, REP.ERR_TOO_BIG, 'option too long');
        continue;
      }
      const data = length > 0 ? await this.read(length) : new Uint8Array(0);
      try {
        const done = await this.option(option, data);
        if (done !== null)
          return done && { export: done, negotiated: this.neg, stream: this.stream, tls: this.tlsDone };
      } catch (e) {
        if (!(e instanceof OptionInvalid)) throw e;
        await this.replyError(option, REP.ERR_INVALID, e.message);
      }
    }
  }

  /** One option: null to go on negotiating, an export to enter transmission, undefined to end. */
  private async option(option: number, data: Uint8Array): Promise<NbdExport | undefined | null> {
    if (this.tlsPending) {
      // As qemu-nbd with TLS credentials: a client that cannot do TLS (not fixed newstyle: proto.md keeps it
      // in NOTLS mode) and EXPORT_NAME (which has no error reply) are dropped; any other option but STARTTLS
      // and ABORT is refused and haggling goes on.
      if (!this.fixed) throw new ProtocolError('TLS required, and the client is not fixed newstyle');
      if (option === OPT.EXPORT_NAME) throw new ProtocolError('NBD_OPT_EXPORT_NAME before TLS, TLS required');
    }
    if (this.tlsPending && option !== OPT.STARTTLS && option !== OPT.ABORT) {
      await this.replyError(option, REP.ERR_TLS_REQD, `option ${option} not permitted before TLS`);
      return null;
    }
    switch (option) {
      case OPT.STARTTLS:
        await this.startTls(data);
        return null;
      case OPT.EXPORT_NAME: {
        let name: string;
        try {
          name = new OptionReader(data).string(data.length);
        } catch (e) {
          // EXPORT_NAME has no error reply: a name that is no NBD string ends the connection.
          throw new ProtocolError(`NBD_OPT_EXPORT_NAME: ${e instanceof Error ? e.message : String(e)}`);
        }
        const exp = this.find(name);
        if (!exp) throw new ProtocolError('no such export'); // the protocol's only answer: close
        const parts = [u64(exp.image.size), u16(exportFlags(exp, this.neg.structured))];
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
          concat([u16(INFO.EXPORT), u64(image.size), u16(exportFlags(exp, this.neg.structured))]),
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

  private async startTls(data: Uint8Array): Promise<void> {
    const tls = this.options.tls;
    if (tls === undefined) {
      await this.replyError(OPT.STARTTLS, REP.ERR_POLICY, 'TLS not configured');
      return;
    }
    if (!this.fixed) throw new ProtocolError('NBD_OPT_STARTTLS from a client that is not fixed newstyle');
    if (data.length !== 0) throw new OptionInvalid('NBD_OPT_STARTTLS takes no data');
    if (this.tlsDone) throw new OptionInvalid('TLS already negotiated');
    let secure: ByteStream & { readonly tlsSummary?: string };
    try {
      secure = await tls.upgrade(this.stream, encodeOptionReply(OPT.STARTTLS, REP.ACK));
    } catch (e) {
      throw new ProtocolError(`TLS handshake failed: ${e instanceof Error ? e.message : String(e)}`);
    }
    this.stream = secure;
    this.tlsDone = true;
    // Nothing negotiated in plaintext survives STARTTLS (proto.md; CVE-2021-3716).
    this.neg = { structured: false, contexts: [], contextExport: undefined };
    this.options.log?.('info', `TLS negotiated${secure.tlsSummary ? ` (${secure.tlsSummary})` : ''}`);
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
