/**
 * @blk/http: read-only HTTP(S) range storage (`HttpStorage`) and Vfs
 * (`HttpVfs`, `withHttp`) for @blk/core. Portable: the global `fetch`, no
 * Node built-ins.
 */
export * from './storage.js';
export * from './s3.js';
export * from './vfs.js';
export * from './transport.js';
