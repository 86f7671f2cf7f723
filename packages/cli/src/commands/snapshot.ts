/**
 * blk snapshot: qemu-img snapshot. `-l` lists an image's internal snapshots (qcow2) in
 * qemu-img's table; creating, applying and deleting snapshots are not implemented yet and are
 * refused as such.
 */
import { openCli } from '../common.js';
import { UsageError, warn } from '../errors.js';
import { snapshotTable } from '../snapshot-table.js';

export interface SnapshotOpts {
  format?: string;
  list?: boolean;
  create?: string;
  apply?: string;
  delete?: string;
  forceShare?: boolean;
}

export async function snapshot(file: string, opts: SnapshotOpts): Promise<number> {
  const actions = [opts.list, opts.create, opts.apply, opts.delete].filter((a) => a !== undefined && a !== false);
  if (actions.length !== 1) throw new UsageError('Cannot mix or omit snapshot actions: give one of -l, -c, -a, -d');
  if (!opts.list) {
    const what = opts.create !== undefined ? '-c' : opts.apply !== undefined ? '-a' : '-d';
    throw new Error(`${file}: snapshot ${what} is not supported yet (blk lists and reads snapshots only)`);
  }
  const image = await openCli(file, {
    format: opts.format,
    readOnly: true,
    backingMode: 'ignore',
    forceShare: opts.forceShare,
    onWarning: warn,
  });
  try {
    // A format with internal snapshots reports a list; qemu-img prints nothing when it is empty.
    const list = image.info().extras?.snapshots;
    if (list === undefined) throw new Error(`${file}: format ${image.format} has no internal snapshots`);
    if (list.length > 0) process.stdout.write(`${snapshotTable(list).join('\n')}\n`);
  } finally {
    await image.close();
  }
  return 0;
}
