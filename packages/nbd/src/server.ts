/**
 * One NBD connection over a byte stream: the fixed newstyle handshake (src/handshake.ts), then the
 * transmission phase (src/transmission.ts). Portable: no Node built-ins; src/node.ts binds it to sockets.
 */
import type { Image } from '@blk/core/portable';
import { Handshake, type HandshakeOptions, type Negotiated } from './handshake.js';
import { ProtocolError } from './protocol.js';
import { type ByteStream, Transmission, type TransmissionOptions } from './transmission.js';

export { blockSizes, type ByteStream, transmissionFlags } from './transmission.js';

export interface NbdExport {
  /** The export name ('' is the default export). */
  name: string;
  description?: string;
  image: Image;
  /** false: never announce NBD_FLAG_CAN_MULTI_CONN (a server taking one client at a time). */
  multiConn?: boolean;
}

export interface ConnectionOptions extends HandshakeOptions, TransmissionOptions {
  /** Milliseconds the client has to reach transmission (default 10 s; 0: no limit). */
  handshakeTimeoutMs?: number;
  /** Timer functions (defaults: the global ones). */
  setTimer?: (fn: () => void, ms: number) => unknown;
  clearTimer?: (handle: unknown) => void;
}

/** One client connection: handshake, then transmission, until it disconnects. */
export class NbdConnection {
  private neg: Negotiated = { structured: false, contexts: [], contextExport: undefined };
  private closed = false;
  private handshaking: Handshake | undefined;
  private transmission: Transmission | undefined;
  /** Set by stop(): no new request is taken; those in flight finish. */
  private stopping = false;

  constructor(
    private stream: ByteStream,
    private readonly exports: readonly NbdExport[],
    private readonly options: ConnectionOptions = {},
  ) {}

  /** Runs the connection to its end; resolves (never rejects) once the stream is closed. */
  async run(): Promise<void> {
    const setTimer = this.options.setTimer ?? ((fn, ms) => setTimeout(fn, ms));
    const clearTimer = this.options.clearTimer ?? ((h) => clearTimeout(h as ReturnType<typeof setTimeout>));
    const log = this.options.log;
    const limit = this.options.handshakeTimeoutMs ?? 10_000;
    let timedOut = false;
    const timer =
      limit > 0
        ? setTimer(() => {
            timedOut = true;
            this.close();
          }, limit)
        : undefined;
    let phase = 'option negotiation';
    try {
      this.handshaking = new Handshake(this.stream, this.exports, this.options);
      const chosen = await this.handshaking.run();
      if (timer !== undefined) clearTimer(timer);
      this.stream = this.handshaking.stream;
      this.handshaking = undefined;
      if (chosen) {
        log?.('info', `export '${chosen.export.name}' negotiated${chosen.tls ? ' over TLS' : ''}`);
        this.neg = chosen.negotiated;
        phase = 'transmission';
        if (!this.stopping) {
          const exp = chosen.export;
          const contexts = this.neg.contextExport === exp.name ? this.neg.contexts : [];
          this.transmission = new Transmission(
            this.stream,
            exp.image,
            { structured: this.neg.structured, contexts },
            this.options,
          );
          const failure = await this.transmission.run();
          if (failure !== undefined) throw failure;
          if (this.stopping) log?.('info', `${phase} ended by the server shutting down`);
        }
      }
    } catch (e) {
      // A protocol violation or a broken stream: drop the connection (and say why).
      const message = e instanceof Error ? e.message : String(e);
      if (timedOut) log?.('error', `${phase} failed: handshake time limit (${limit / 1000} s) reached`);
      else if (this.stopping) log?.('info', `${phase} ended by the server shutting down`);
      else if (message === 'end of stream' || message === 'closed') log?.('info', `client left during ${phase}`);
      else log?.(e instanceof ProtocolError ? 'error' : 'info', `${phase} failed: ${message}`);
    } finally {
      if (timer !== undefined) clearTimer(timer);
      this.close();
    }
  }

  /**
   * Ends the connection gently (server shutdown): a handshake is cut off; in transmission no further
   * request is read, those in flight finish and are answered, then the connection closes.
   */
  stop(): void {
    this.stopping = true;
    if (this.handshaking !== undefined) this.close();
    else this.transmission?.stop();
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    (this.handshaking?.stream ?? this.stream).close();
  }
}
