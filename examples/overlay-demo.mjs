// The built-in example: a raw base image, a UML COW overlay on top of it,
// writes through the overlay, and what is allocated where.
//   pnpm example            (files go to a fresh temp directory, removed at the end)
//   pnpm example -- --keep  (keep them, and print where they are)
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createImage, openImage } from '@blk/images';

const MiB = 1024 * 1024;
const dir = mkdtempSync(join(tmpdir(), 'blk-demo-'));
const basePath = join(dir, 'base.img');
const overlayPath = join(dir, 'overlay.cow');

// 1. A 16 MiB raw base whose first MiB holds a recognisable pattern.
await createImage(basePath, { format: 'raw', size: 16 * MiB });
const base = await openImage(basePath, { format: 'raw' });
await base.write(0, new Uint8Array(MiB).fill(0xba));
await base.close();

// 2. A COW overlay (UML v3, as uml_mkcow makes it) that records the base's path, size and mtime.
await createImage(overlayPath, { format: 'cow', backing: basePath });

// 3. Write through the overlay: an unaligned write (read-modify-write of two sectors) and a 64 KiB one.
const overlay = await openImage(overlayPath);
await overlay.write(1000, new TextEncoder().encode('hello from blk'));
await overlay.write(4 * MiB, new Uint8Array(64 * 1024).fill(0xc0));
await overlay.flush();

console.log(`overlay: ${overlayPath}`);
console.log(
  `  format ${overlay.format} (${overlay.info().formatSpecific.variant}), virtual size ${overlay.size} bytes`,
);
console.log(`  backing ${overlay.info().backing?.resolved} (${overlay.backing?.format})`);
console.log(
  `  file length ${statSync(overlayPath).size} bytes, ${statSync(overlayPath).blocks * 512} bytes on disk (sparse)`,
);

// 4. What each range reads from: depth 0 = overlay, 1 = base, none = zeros. A hole in the base
//    file (never written: the rest of its 16 MiB) is a zero run of the base.
console.log('\nallocation across the chain:');
console.log('  start       length      where');
for await (const run of overlay.map()) {
  const layer = run.depth === 0 ? 'overlay' : `backing (depth ${run.depth})`;
  const where = run.depth === undefined ? 'zeros' : run.zero ? `${layer}, a hole: zeros` : layer;
  console.log(`  ${String(run.start).padEnd(11)} ${String(run.length).padEnd(11)} ${where}`);
}

// 5. Reads see the overlay's data where it wrote, the base's elsewhere.
const text = new TextDecoder().decode(await overlay.read(1000, 14));
const around = await overlay.read(990, 10);
console.log(
  `\nread at 1000: "${text}"; the 10 bytes before it come from the base: ${[...around].map((b) => b.toString(16)).join(' ')}`,
);
const top = await overlay.isAllocated(0, 16 * MiB);
console.log(`isAllocated(0): ${top.allocated} for ${top.length} bytes (sector 1 is the first the overlay holds)`);
await overlay.close();

if (process.argv.includes('--keep')) console.log(`\nfiles kept in ${dir}`);
else rmSync(dir, { recursive: true, force: true });
