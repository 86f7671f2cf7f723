/**
 * What `blk check` can find wrong in a COW file besides its header (which
 * `open` validates), and how each is repaired (qemu-img check -r):
 *
 * - allocated sectors whose data lies past the end of the file (a file
 *   truncated, or a crash between a bitmap write and the data's extension):
 *   a corruption. They read as zeros today; the repair extends the file so
 *   that they lie inside it and still read as zeros: what the guest sees
 *   does not change, and the bitmap and file agree again.
 * - bytes past the end of the data area (dataOffset + size): nothing can
 *   read them; leaked. The repair truncates the file there.
 * - bits set for sectors past the last one, in the slack of the bitmap's
 *   last byte: nothing reads them, but a grow would make them allocate
 *   sectors nobody wrote; leaked. The repair clears them.
 *
 * The backing chain (missing file, changed size or mtime) is the CLI's
 * check and no repair of the image itself can fix it.
 */
import { flushStorage, truncateTo } from '@blk/core/portable';
import type { DriverCheckResult, RepairRequest, Storage } from '@blk/core/portable';
import type { BitmapCache } from './bitmap-cache.js';
import type { CowLayout } from './layout.js';
import { setBitsOnDisk } from './resize.js';
import { COW_SECTOR_SIZE } from './variants.js';

const SS = COW_SECTOR_SIZE;
/** At most this many ERROR lines per kind of problem; the rest are counted. */
const MAX_LINES = 20;

export interface CowCheckTarget {
  storage: Storage;
  layout: CowLayout;
  bitmap: BitmapCache;
}

export interface CowCheckOutcome extends DriverCheckResult {
  /** True when bits were changed on disk behind the bitmap cache (the caller drops the cache). */
  bitmapChanged: boolean;
}

const sectorsText = (first: number, count: number): string =>
  count === 1 ? `sector ${first}` : `sectors ${first}-${first + count - 1}`;

export async function checkCow(target: CowCheckTarget, repair: RepairRequest): Promise<CowCheckOutcome> {
  const { storage, layout, bitmap } = target;
  const out: CowCheckOutcome = {
    corruptions: 0,
    leaks: 0,
    corruptionsFixed: 0,
    leaksFixed: 0,
    messages: [],
    bitmapChanged: false,
  };
  const fileSize = await storage.size();
  const dataEnd = layout.dataOffset + layout.sectors * SS;

  // Allocated sectors must have all their data inside the file.
  const firstOutside = Math.max(0, Math.floor((fileSize - layout.dataOffset) / SS));
  let outside = 0;
  let lastSet = -1;
  let lines = 0;
  for (let sector = firstOutside; sector < layout.trackedSectors; ) {
    const run = await bitmap.findRun(sector, layout.trackedSectors - sector);
    if (run.set) {
      outside += run.count;
      lastSet = sector + run.count - 1;
      if (lines++ < MAX_LINES) {
        out.messages.push(
          `ERROR ${sectorsText(sector, run.count)} (offset ${sector * SS}): marked allocated, `
            + `but the data lies past the end of the file (${fileSize} bytes)`,
        );
      }
    }
    sector += run.count;
  }
  if (lines > MAX_LINES)
    out.messages.push(`ERROR ... and ${lines - MAX_LINES} more runs of allocated sectors past the end of the file`);
  if (outside > 0) {
    if (repair.corruptions) {
      const end = layout.dataOffset + (lastSet + 1) * SS;
      await truncateTo(storage, end);
      out.corruptionsFixed += outside;
      out.messages.push(
        `Repairing: extended the file to ${end} bytes, so that the ${outside} allocated sectors past its end `
          + 'lie inside it (they read as zeros, as before)',
      );
    } else {
      out.corruptions += outside;
    }
  }

  // Bytes past the data area.
  if (fileSize > dataEnd) {
    const leaked = Math.ceil((fileSize - dataEnd) / SS);
    const what = `${fileSize - dataEnd} bytes past the end of the data area (offset ${dataEnd}), which nothing reads`;
    if (repair.leaks) {
      await truncateTo(storage, dataEnd);
      out.leaksFixed += leaked;
      out.messages.push(`Repairing: truncated the file to ${dataEnd} bytes, dropping ${what}`);
    } else {
      out.leaks += leaked;
      out.messages.push(`Leaked: ${what}`);
    }
  }

  // Bits past the last sector, in the bitmap's last byte.
  const stray = await setBitsOnDisk(
    storage,
    layout.bitmapOffset,
    layout.trackedSectors,
    layout.bitmapLength * 8,
    false,
  );
  if (stray > 0) {
    const what = `${stray} bits set past the last sector (${layout.sectors - 1}) in the bitmap's last byte`;
    if (repair.leaks) {
      await setBitsOnDisk(storage, layout.bitmapOffset, layout.trackedSectors, layout.bitmapLength * 8, true);
      out.bitmapChanged = true;
      out.leaksFixed += stray;
      out.messages.push(`Repairing: cleared ${what}`);
    } else {
      out.leaks += stray;
      out.messages.push(`Leaked: ${what}`);
    }
  }
  if (out.corruptionsFixed + out.leaksFixed > 0) await flushStorage(storage);
  return out;
}
