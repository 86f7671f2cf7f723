/**
 * @blk/http under the `node` export condition: the portable entry, with `nodeTransport()` (sockets,
 * bodies read straight into their buffers) as HttpStorage's default instead of the global fetch.
 *
 * The transport module (node:net, node:tls and what they pull in: milliseconds at every start of a
 * program that imports @blk/http) loads on the first request, not at import: a program that opens
 * no URL never loads it.
 */
import type { RangeTransport } from './transport.js';
import { setDefaultTransport } from './storage.js';

export * from './index.js';

let transport: Promise<RangeTransport> | undefined;

setDefaultTransport(async (request) => {
  transport ??= import('./node-transport.js').then((m) => m.nodeTransport());
  return (await transport)(request);
});
