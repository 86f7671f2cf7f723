/**
 * Text from images and file names, made safe to print on a terminal. A
 * backing path or file name is data from whoever made the image: a newline
 * in it could forge a line of output (a fake "Image committed."), an ESC
 * sequence could rewrite the screen or the window title, and bidirectional
 * overrides could show one name as another. Every such character is shown
 * as an escape (`\n`, `\x1b`, `\u202e`), and a backslash as `\\` so that
 * no name can pass for another's escape; everything else is left alone.
 */
/** C0 controls, DEL, C1 controls, and the Unicode format characters that reorder or hide text. */
const UNSAFE = /[\\\u0000-\u001f\u007f-\u009f\u061c\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff\ufff9-\ufffb]/gu;
const NAMED = { '\\': '\\\\', '\n': '\\n', '\r': '\\r', '\t': '\\t' };
/** `text` with every control or reordering character replaced by an escape. */
export function printable(text) {
    return text.replace(UNSAFE, (ch) => {
        const named = NAMED[ch];
        if (named !== undefined)
            return named;
        const cp = ch.codePointAt(0);
        return cp <= 0xff ? `\\x${cp.toString(16).padStart(2, '0')}` : `\\u${cp.toString(16).padStart(4, '0')}`;
    });
}
/**
 * Bytes as stored (a backing path that is not valid UTF-8): valid UTF-8
 * sequences as text, every other byte as `\xHH`, then made printable.
 */
export function printableBytes(bytes) {
    let out = '';
    let i = 0;
    const decoder = new TextDecoder('utf-8', { fatal: true });
    while (i < bytes.length) {
        const len = sequenceLength(bytes, i);
        if (len === 0) {
            out += `\\x${bytes[i].toString(16).padStart(2, '0')}`;
            i += 1;
        }
        else {
            out += printable(decoder.decode(bytes.subarray(i, i + len)));
            i += len;
        }
    }
    return out;
}
/** Length of the valid UTF-8 sequence starting at `i`, or 0 when the byte there does not start one. */
function sequenceLength(bytes, i) {
    const b = bytes[i];
    let len;
    if (b < 0x80)
        return 1;
    if (b >= 0xc2 && b <= 0xdf)
        len = 2;
    else if (b >= 0xe0 && b <= 0xef)
        len = 3;
    else if (b >= 0xf0 && b <= 0xf4)
        len = 4;
    else
        return 0;
    if (i + len > bytes.length)
        return 0;
    try {
        new TextDecoder('utf-8', { fatal: true }).decode(bytes.subarray(i, i + len));
        return len;
    }
    catch {
        return 0;
    }
}
