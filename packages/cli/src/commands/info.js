import { openCli, rulesOf } from '../common.js';
import { describeImage, humanInfo } from '../describe.js';
import { hostVfs } from '../images.js';
import { judgeBacking } from '../jobs/common.js';
import { toQemuJson } from '../qjson.js';
export async function info(file, opts) {
    const rules = rulesOf(opts);
    const base = {
        format: opts.format, readOnly: true, backingProbe: opts.backingProbe, backingFormat: opts.backingFormat,
        forceShare: opts.forceShare, ...rules,
    };
    // --backing-chain: the whole chain must open (under the rules); a changed backing file is reported, not refused.
    const image = opts.backingChain
        ? await openCli(file, { ...base, onMismatch: 'accept' })
        : await openCli(file, { ...base, backingMode: 'ignore' });
    // The verdict is shown under explicit rules, and whenever the default rule (owner-rule.ts) refuses.
    const explicit = rules.forbidBacking === true || (rules.backingDirs?.length ?? 0) > 0;
    try {
        const layers = opts.backingChain ? image.chain() : [image];
        const entries = [];
        for (const [i, layer] of layers.entries()) {
            let verdict = await judgeBacking(hostVfs(), layer, rules);
            if (verdict?.allowed && !explicit)
                verdict = undefined;
            entries.push(describeImage(layer, {
                filename: i === 0 ? file : layer.path,
                backingProbe: opts.backingProbe,
                // -F names the top image's backing file only.
                backingFormat: i === 0 ? opts.backingFormat : undefined,
                ...(verdict ? { verdict } : {}),
            }));
        }
        if (opts.output === 'json') {
            const value = opts.backingChain ? entries : entries[0];
            process.stdout.write(`${toQemuJson(value)}\n`);
        }
        else {
            const text = entries.map((e, i) => humanInfo(e, { storedBackingBytes: layers[i].backingReference?.rawPath }));
            process.stdout.write(`${text.join('\n\n')}\n`);
        }
    }
    finally {
        await image.close();
    }
    return 0;
}
