/**
 * qemu-img's `-o key=value,key=value` creation options, mapped to blk's
 * createImage options. `,,` stands for a literal comma, as in QEMU.
 */
import { isPreallocationMode } from '@blk/core';
import { UsageError } from './errors.js';
import { parseSize } from './size.js';
/** Splits `a=1,b=x,,y` into pairs (`,,` is a literal comma). */
export function splitOptionList(list) {
    const items = [];
    let cur = '';
    for (let i = 0; i < list.length; i++) {
        const ch = list[i];
        if (ch === ',') {
            if (list[i + 1] === ',') {
                cur += ',';
                i++;
            }
            else {
                items.push(cur);
                cur = '';
            }
        }
        else {
            cur += ch;
        }
    }
    items.push(cur);
    return items.filter((s) => s !== '').map((item) => {
        const eq = item.indexOf('=');
        return eq < 0 ? [item, undefined] : [item.slice(0, eq), item.slice(eq + 1)];
    });
}
/** COW header versions as qemu-img's `-o version=N` names them. */
const COW_VERSIONS = { 3: 'v3', 2: 'v2-qemu-lp64', 1: 'v1' };
const COMMON_HELP = [
    { name: 'size=<size>', help: 'Virtual disk size' },
];
const FORMAT_HELP = {
    raw: [...COMMON_HELP, { name: 'preallocation=<str>', help: 'Preallocation mode (allowed values: off, falloc, full)' }],
    cow: [
        ...COMMON_HELP,
        { name: 'preallocation=<str>', help: 'Preallocation mode (allowed values: off, metadata, falloc, full); bits stay clear' },
        { name: 'backing_file=<file>', help: 'File name of a base image' },
        { name: 'backing_fmt=<fmt>', help: 'Image format of the base image' },
        { name: 'version=<3|2|1>', help: 'COW header version: 3 = UML (default), 2 = QEMU\'s cow (v2-qemu-lp64), 1 = old UML' },
        { name: 'variant=<name>', help: 'Exact layout: v3, v2-qemu-lp64, v2-qemu-ilp32, v2-uml, v1' },
    ],
};
export function formatOptionHelp(format) {
    const list = FORMAT_HELP[format] ?? [...COMMON_HELP, { name: '<key>=<value>', help: 'passed to the driver as a driver option' }];
    const width = Math.max(...list.map((o) => o.name.length)) + 2;
    return `Supported options:\n${list.map((o) => `  ${o.name.padEnd(width)}${o.help}`).join('\n')}\n`;
}
function driverValue(value) {
    if (/^\d+$/.test(value) && value.length < 16)
        return Number(value);
    if (value === 'on' || value === 'true')
        return true;
    if (value === 'off' || value === 'false')
        return false;
    return value;
}
/** Interprets every `-o` argument for a new image of `format`; errors name `file`, the image being made (as qemu-img's). */
export function parseCreateOptions(format, lists, file) {
    try {
        return parseOptionLists(format, lists);
    }
    catch (err) {
        if (file !== undefined && err instanceof UsageError)
            throw new UsageError(`${file}: ${err.message}`);
        throw err;
    }
}
function parseOptionLists(format, lists) {
    const out = { driverOptions: {}, given: [], help: false };
    for (const list of lists) {
        for (const [key, value] of splitOptionList(list)) {
            if (key === 'help' || key === '?') {
                out.help = true;
                continue;
            }
            if (value === undefined)
                throw new UsageError(`invalid option '${key}': expected key=value`);
            switch (key) {
                case 'size':
                    out.size = parseSize(value, 'image size');
                    break;
                case 'backing_file':
                    out.backingFile = value;
                    break;
                case 'backing_fmt':
                    out.backingFormat = value;
                    break;
                case 'preallocation':
                    out.preallocation = parsePreallocation(value);
                    out.given.push([key, value]);
                    break;
                default:
                    if (format === 'raw')
                        throw new UsageError(`format raw does not support option '${key}'`);
                    if (key === 'version' && format === 'cow') {
                        const variant = COW_VERSIONS[value];
                        if (!variant)
                            throw new UsageError(`invalid cow version '${value}' (expected 3, 2 or 1)`);
                        out.driverOptions.variant = variant;
                    }
                    else {
                        out.driverOptions[key] = driverValue(value);
                    }
                    out.given.push([key, value]);
            }
        }
    }
    return out;
}
/** A preallocation mode named on the command line (-o preallocation=, --preallocation=). */
export function parsePreallocation(value) {
    if (!isPreallocationMode(value)) {
        throw new UsageError(`Invalid preallocation mode '${value}' (expected off, metadata, falloc or full)`);
    }
    return value;
}
