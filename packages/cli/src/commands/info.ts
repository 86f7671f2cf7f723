/** blk info: qemu-img info. */
import type { Image } from '@blk/core';
import { openCli } from '../common.js';
import { describeImage, humanInfo, type QDict } from '../describe.js';
import { toQemuJson, type QValue } from '../qjson.js';

export interface InfoOpts {
  format?: string;
  output: 'human' | 'json';
  backingChain?: boolean;
  backingProbe?: boolean;
}

export async function info(file: string, opts: InfoOpts): Promise<number> {
  const base = { format: opts.format, readOnly: true, backingProbe: opts.backingProbe };
  let image: Image;
  if (opts.backingChain) {
    // The whole chain must open; a changed backing file is reported, not refused.
    image = await openCli(file, { ...base, onMismatch: 'accept' });
  } else {
    try {
      image = await openCli(file, { ...base, onMismatch: 'accept' });
    } catch {
      // Describe the image even when its backing file is missing or unreadable.
      image = await openCli(file, { ...base, backingMode: 'ignore' });
    }
  }
  try {
    const layers = opts.backingChain ? image.chain() : [image];
    const entries: QDict[] = layers.map((layer, i) => describeImage(layer, {
      filename: i === 0 ? file : layer.path,
      backingProbe: opts.backingProbe,
    }));
    if (opts.output === 'json') {
      const value: QValue = opts.backingChain ? entries : entries[0]!;
      process.stdout.write(`${toQemuJson(value)}\n`);
    } else {
      process.stdout.write(`${entries.map(humanInfo).join('\n\n')}\n`);
    }
  } finally {
    await image.close();
  }
  return 0;
}
