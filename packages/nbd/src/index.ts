/** @blk/nbd: an NBD server for @blk/core images over any byte stream (Node sockets: @blk/nbd/node). */
export * from './protocol.js';
export { NbdConnection } from './server.js';
export type { ConnectionOptions, NbdExport } from './server.js';
export {
  blockSizes,
  MAX_EXTENTS,
  Transmission,
  transmissionFlags,
  type ByteStream,
  type TransmissionOptions,
  type TransmissionState,
} from './transmission.js';
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
