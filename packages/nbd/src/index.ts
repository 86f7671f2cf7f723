/** @blk/nbd: an NBD server for @blk/core images over any byte stream (Node sockets: @blk/nbd/node). */
export * from './protocol.js';
export { blockSizes, NbdConnection, transmissionFlags, zeroRuns } from './server.js';
export type { ByteStream, ConnectionOptions, NbdExport } from './server.js';
export {
  checkExports,
  type ExportSpec,
  ExportSpecError,
  parseBool,
  parseExportSpec,
  parseExportsConfig,
  parseKeyval,
} from './exports.js';
export {
  exportFlags,
  Handshake,
  type ConnectionLog,
  type HandshakeOptions,
  type HandshakeResult,
  type Negotiated,
  type TlsUpgrade,
} from './handshake.js';
