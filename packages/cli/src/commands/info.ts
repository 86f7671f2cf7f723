/**
 * blk info: qemu-img info. Without --backing-chain the backing file is never
 * opened (as qemu-img opens images for info with BDRV_O_NO_BACKING): info
 * says what an image would make blk open (the stored path, the resolved
 * one, and, under --backing-dir / --forbid-backing, whether that is allowed)
 * before anything opens it.
 */
import type { Image } from '@blk/core';
import { openCli, rulesOf, type BackingRuleFlags } from '../common.js';
import { describeImage, humanInfo, type QDict } from '../describe.js';
import { hostVfs } from '../images.js';
import { judgeBacking, type BackingVerdict } from '../jobs/common.js';
import { toQemuJson, type QValue } from '../qjson.js';
import { writeStdout } from '../stdio.js';

export interface InfoOpts extends BackingRuleFlags {
  format?: string;
  output: 'human' | 'json';
  backingChain?: boolean;
  backingProbe?: boolean;
  /** -F: the backing file's format (cow records none). */
  backingFormat?: string;
  /** -U: read the image even while another process writes it. */
  forceShare?: boolean;
}

export async function info(file: string, opts: InfoOpts): Promise<number> {
  const rules = rulesOf(opts);
  const base = {
    format: opts.format,
    readOnly: true,
    backingProbe: opts.backingProbe,
    backingFormat: opts.backingFormat,
    forceShare: opts.forceShare,
    ...rules,
  };
  // --backing-chain: the whole chain must open (under the rules); a changed backing file is reported, not refused.
  const image: Image = opts.backingChain
    ? await openCli(file, { ...base, onMismatch: 'accept' })
    : await openCli(file, { ...base, backingMode: 'ignore' });
  // The verdict is shown under explicit rules, and whenever the default rule (owner-rule.ts) refuses.
  const explicit = rules.forbidBacking === true || (rules.backingDirs?.length ?? 0) > 0;
  try {
    const layers = opts.backingChain ? image.chain() : [image];
    const entries: QDict[] = [];
    for (const [i, layer] of layers.entries()) {
      let verdict: BackingVerdict | undefined = await judgeBacking(hostVfs(), layer, rules);
      if (verdict?.allowed && !explicit) verdict = undefined;
      entries.push(
        describeImage(layer, {
          filename: i === 0 ? file : layer.path,
          backingProbe: opts.backingProbe,
          // -F names the top image's backing file only.
          backingFormat: i === 0 ? opts.backingFormat : undefined,
          ...(verdict ? { verdict } : {}),
        }),
      );
    }
    if (opts.output === 'json') {
      const value: QValue = opts.backingChain ? entries : entries[0]!;
      writeStdout(`${toQemuJson(value)}\n`);
    } else {
      const text = entries.map((e, i) =>
        humanInfo(e, {
          storedBackingBytes: layers[i]!.backingReference?.rawPath,
          snapshots: layers[i]!.info().extras?.snapshots,
        }),
      );
      writeStdout(`${text.join('\n\n')}\n`);
    }
  } finally {
    await image.close();
  }
  return 0;
}
