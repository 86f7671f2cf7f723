import { setBitsOnDisk } from './resize.js';
import { COW_SECTOR_SIZE } from './variants.js';
const SS = COW_SECTOR_SIZE;
/** At most this many ERROR lines per kind of problem; the rest are counted. */
const MAX_LINES = 20;
const sectorsText = (first, count) => count === 1 ? `sector ${first}` : `sectors ${first}-${first + count - 1}`;
export async function checkCow(target, repair) {
    const { storage, layout, bitmap } = target;
    const out = { corruptions: 0, leaks: 0, corruptionsFixed: 0, leaksFixed: 0, messages: [], bitmapChanged: false };
    const fileSize = await storage.size();
    const dataEnd = layout.dataOffset + layout.sectors * SS;
    // Allocated sectors must have all their data inside the file.
    const firstOutside = Math.max(0, Math.floor((fileSize - layout.dataOffset) / SS));
    let outside = 0;
    let lastSet = -1;
    let lines = 0;
    for (let sector = firstOutside; sector < layout.trackedSectors;) {
        const run = await bitmap.findRun(sector, layout.trackedSectors - sector);
        if (run.set) {
            outside += run.count;
            lastSet = sector + run.count - 1;
            if (lines++ < MAX_LINES) {
                out.messages.push(`ERROR ${sectorsText(sector, run.count)} (offset ${sector * SS}): marked allocated, `
                    + `but the data lies past the end of the file (${fileSize} bytes)`);
            }
        }
        sector += run.count;
    }
    if (lines > MAX_LINES)
        out.messages.push(`ERROR ... and ${lines - MAX_LINES} more runs of allocated sectors past the end of the file`);
    if (outside > 0) {
        if (repair.corruptions) {
            const end = layout.dataOffset + (lastSet + 1) * SS;
            await storage.truncate(end);
            out.corruptionsFixed += outside;
            out.messages.push(`Repairing: extended the file to ${end} bytes, so that the ${outside} allocated sectors past its end `
                + 'lie inside it (they read as zeros, as before)');
        }
        else {
            out.corruptions += outside;
        }
    }
    // Bytes past the data area.
    if (fileSize > dataEnd) {
        const leaked = Math.ceil((fileSize - dataEnd) / SS);
        const what = `${fileSize - dataEnd} bytes past the end of the data area (offset ${dataEnd}), which nothing reads`;
        if (repair.leaks) {
            await storage.truncate(dataEnd);
            out.leaksFixed += leaked;
            out.messages.push(`Repairing: truncated the file to ${dataEnd} bytes, dropping ${what}`);
        }
        else {
            out.leaks += leaked;
            out.messages.push(`Leaked: ${what}`);
        }
    }
    // Bits past the last sector, in the bitmap's last byte.
    const stray = await setBitsOnDisk(storage, layout.bitmapOffset, layout.trackedSectors, layout.bitmapLength * 8, false);
    if (stray > 0) {
        const what = `${stray} bits set past the last sector (${layout.sectors - 1}) in the bitmap's last byte`;
        if (repair.leaks) {
            await setBitsOnDisk(storage, layout.bitmapOffset, layout.trackedSectors, layout.bitmapLength * 8, true);
            out.bitmapChanged = true;
            out.leaksFixed += stray;
            out.messages.push(`Repairing: cleared ${what}`);
        }
        else {
            out.leaks += stray;
            out.messages.push(`Leaked: ${what}`);
        }
    }
    if (out.corruptionsFixed + out.leaksFixed > 0)
        await storage.flush();
    return out;
}
