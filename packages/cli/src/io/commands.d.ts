import type { IoSession } from './session.js';
export { IoSession, type Output } from './session.js';
/** Runs one command line; false when it failed (qemu-io then exits 1). */
export declare function runCommand(session: IoSession, line: string): Promise<boolean>;
