/**
 * Text from images and file names, made safe to print on a terminal. A
 * backing path or file name is data from whoever made the image: a newline
 * in it could forge a line of output (a fake "Image committed."), an ESC
 * sequence could rewrite the screen or the window title, and bidirectional
 * overrides could show one name as another. Every such character is shown
 * as an escape (`\n`, `\x1b`, `\u202e`), and a backslash as `\\` so that
 * no name can pass for another's escape; everything else is left alone.
 */
/** `text` with every control or reordering character replaced by an escape. */
export declare function printable(text: string): string;
/**
 * Bytes as stored (a backing path that is not valid UTF-8): valid UTF-8
 * sequences as text, every other byte as `\xHH`, then made printable.
 */
export declare function printableBytes(bytes: Uint8Array): string;
