/**
 * getopt(3) as glibc does it for qemu-io's commands: options may come before
 * or after the operands (GNU permutation), `-abc` bundles flags, `-P5` and
 * `-P 5` both give a value, `--` ends the options.
 */
export function getopt(args, optstring, name) {
    const flags = new Map();
    const operands = [];
    for (let i = 0; i < args.length; i++) {
        const arg = args[i];
        if (arg === '--') {
            operands.push(...args.slice(i + 1));
            break;
        }
        if (arg.length < 2 || arg[0] !== '-') {
            operands.push(arg);
            continue;
        }
        for (let j = 1; j < arg.length; j++) {
            const ch = arg[j];
            const at = optstring.indexOf(ch);
            if (at < 0 || ch === ':')
                return { ok: false, message: `${name}: invalid option -- '${ch}'` };
            if (optstring[at + 1] === ':') {
                let value = arg.slice(j + 1);
                if (value === '') {
                    if (i + 1 >= args.length)
                        return { ok: false, message: `${name}: option requires an argument -- '${ch}'` };
                    value = args[++i];
                }
                flags.set(ch, value);
                break;
            }
            flags.set(ch, true);
        }
    }
    return { ok: true, flags, operands };
}
