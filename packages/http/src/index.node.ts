/**
 * @blk/http under the `node` export condition: the portable entry, with `nodeTransport()` (sockets,
 * bodies read straight into their buffers) as HttpStorage's default instead of the global fetch.
 */
import { nodeTransport } from './node-transport.js';
import { setDefaultTransport } from './storage.js';

export * from './index.js';

setDefaultTransport(nodeTransport());
