/**
 * qcow2 writes (issue 13): scattered 4 KiB allocating writes into a fresh qcow2 (64 KiB clusters, no
 * backing file), then a flush: `qemu-img bench -w -t writeback -d 32` with a step that visits the
 * image in a scattered order (offset i * 7919 * 4 KiB modulo 1 GiB, each write in a cluster of its
 * own) against `blk io` issuing the same offsets as aio_write commands (then aio_flush, flush).
 * IOPS over the whole process, start-up included for both. Each run starts from a new image made
 * by qemu-img (untimed). (qemu-io with thousands of -c commands is not a baseline: its cost per
 * command grows with their number.)
 */
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';

export default function qcow2Write(ctx) {
  const { S, QUICK, dir, have, log, interleave, best, addRow, pending, runCommand, blkCli } = ctx;
  return {
    id: 'qcow2-write',
    rows: ['qcow2-rand-alloc-write'],
    run() {
      const count = QUICK ? 2000 : 20000;
      const size = 1 << 30;
      const img = path.join(dir, 'qcow2-write.qcow2');
      const step = 7919 * 4096;
      const cmds = [];
      for (let i = 0; i < count; i++) cmds.push('-c', `aio_write -q ${(i * step) % size} 4k`);
      cmds.push('-c', 'aio_flush', '-c', 'flush');
      const fresh = () => {
        fs.rmSync(img, { force: true });
        execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', img, String(size)]);
      };
      const variants = [
        {
          key: 'qemu-img bench',
          before: fresh,
          run: () => {
            const r = runCommand([
              'qemu-img',
              'bench',
              '-w',
              '-t',
              'writeback',
              '-f',
              'qcow2',
              '-c',
              String(count),
              '-d',
              '32',
              '-s',
              '4096',
              '-S',
              String(step),
              img,
            ]);
            return { value: count / r.seconds, unit: 'IOPS', maxRssKiB: r.maxRssKiB };
          },
        },
      ];
      if (have.cli) {
        variants.push({
          key: 'blk io',
          before: fresh,
          run: () => {
            const r = runCommand(blkCli('io', '-f', 'qcow2', ...cmds, img));
            return { value: count / r.seconds, unit: 'IOPS', maxRssKiB: r.maxRssKiB };
          },
        });
      }
      log(`  ${count} scattered 4 KiB allocating writes into a fresh 1 GiB qcow2 (64 KiB clusters), then flush`);
      const { out, errors } = interleave(S.cliReps, variants);
      const q = best(out['qemu-img bench'], true);
      const b = best(out['blk io'], true);
      addRow({
        id: 'qcow2-rand-alloc-write',
        title: `scattered 4 KiB allocating writes into a fresh qcow2, then flush (${count}, \`blk io\` aio_write)`,
        unit: 'IOPS',
        blk: b?.value,
        baseline: q?.value,
        baselineName: '`qemu-img bench -w -t writeback -d 32` over the same offsets',
        goal: { min: 1.0 },
        rssKiB: b?.maxRssKiB,
        note: !have.cli ? pending('@blk/cli') : (errors['blk io'] ?? errors['qemu-img bench']),
        samples: out,
      });
    },
  };
}
