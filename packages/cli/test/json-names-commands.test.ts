/**
 * qemu-img takes `json:{...}` names in every command that names an image, and `--image-opts`
 * option strings (`driver=qcow2,file.filename=F`); so does blk (image-name.ts, image-operands.ts),
 * judged against qemu-img 7.2 on the same files: stdout, stderr's reason and the exit code of
 * info --output=json, map (human and json), check (human and json), convert -O raw (then the bytes),
 * compare, measure, dd; and the errors for bad names (a parse error, not an object, an option the
 * driver lacks, --image-opts with -f, a bare --image-opts name).
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { blk, ensureBuilt, hasCommand, tempDir } from './helpers.js';

const QEMU = hasCommand('qemu-img') && hasCommand('qemu-io');
let dir: string;
beforeAll(() => {
  ensureBuilt();
  dir = tempDir('json-names-commands');
  if (!QEMU) return;
  const run = (cmd: string, args: string[]) => {
    const r = spawnSync(cmd, args, { cwd: dir, encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')}: ${r.stderr}`);
  };
  run('qemu-img', ['create', '-q', '-f', 'qcow2', 'a.qcow2', '1M']);
  run('qemu-io', ['-f', 'qcow2', '-c', 'write -P 0x33 64k 128k', '-c', 'write -z 512k 64k', 'a.qcow2']);
  run('qemu-img', ['create', '-q', '-f', 'raw', 'b.raw', '1M']);
  run('qemu-io', ['-f', 'raw', '-c', 'write -P 0x33 64k 128k', 'b.raw']);
});
afterAll(() => {
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

interface Outcome {
  out: string;
  /** The reason after the tool's prefix (`qemu-img: Could not open 'NAME': `, `blk: NAME: `). */
  err: string;
  code: number | null;
}

function reasonOf(stderr: string): string {
  return stderr
    .split('\n')
    .filter(Boolean)
    .map((l) => l.replace(/^qemu-img: (Could not open '.*?': )?/, '').replace(/^blk: (json:.*?|[^ ]*): /, ''))
    .join('\n');
}

function both(args: string[]): { blk: Outcome; qemu: Outcome } {
  const q = spawnSync('qemu-img', args, { cwd: dir, encoding: 'utf8' });
  const b = blk(args, { cwd: dir });
  return {
    blk: { out: b.stdout, err: reasonOf(b.stderr), code: b.code },
    qemu: { out: q.stdout, err: reasonOf(q.stderr), code: q.status },
  };
}

const QCOW2 = [
  'json:{"driver":"qcow2","file":{"driver":"file","filename":"a.qcow2"}}',
  "json:{'driver':'qcow2','file.filename':'a.qcow2'}",
  'json:{"file":{"filename":"a.qcow2"}}',
];
const RAW = 'json:{"driver":"file","filename":"b.raw"}';

describe.skipIf(!QEMU)('json: names and --image-opts in the commands, as qemu-img 7.2', () => {
  it('info --output=json, map, check, measure: the same output and exit code', () => {
    const runs: [string[], string][] = [
      [['info', '--output=json'], QCOW2[0]!],
      [['map'], QCOW2[0]!],
      [['check', '--output=json'], QCOW2[0]!],
      [['map', '--output=json'], QCOW2[1]!],
      [['check'], QCOW2[2]!],
      [['map', '--output=json'], RAW],
      [['measure', '-O', 'qcow2'], QCOW2[0]!],
    ];
    for (const [cmd, name] of runs) {
      const r = both([...cmd, name]);
      expect(r.blk, `${cmd.join(' ')} ${name}`).toEqual(r.qemu);
    }
    // Where blk differs: `"driver":"file"` is QEMU's protocol node, whose format info calls `file`;
    // blk reads that file as raw and says so.
    const r = both(['info', '--output=json', RAW]);
    expect(JSON.parse(r.qemu.out).format).toBe('file');
    expect(JSON.parse(r.blk.out).format).toBe('raw');
  });

  it('--image-opts: the same as the json: name', () => {
    for (const cmd of [['info'], ['check', '--output=json']]) {
      const r = both([...cmd, '--image-opts', 'driver=qcow2,file.filename=a.qcow2']);
      expect(r.blk, cmd.join(' ')).toEqual(r.qemu);
    }
  });

  it('convert -O raw of a json: source and dd if=json: give the same bytes; compare says identical', () => {
    for (const [tool, out] of [
      ['qemu', 'q.raw'],
      ['blk', 'b.raw.out'],
    ] as const) {
      const args = ['convert', '-O', 'raw', QCOW2[1]!, out];
      const r = tool === 'qemu' ? spawnSync('qemu-img', args, { cwd: dir }) : blk(args, { cwd: dir });
      expect(tool === 'qemu' ? (r as { status: number }).status : (r as { code: number }).code).toBe(0);
    }
    expect(fs.readFileSync(path.join(dir, 'b.raw.out')).equals(fs.readFileSync(path.join(dir, 'q.raw')))).toBe(true);
    for (const pair of [
      [QCOW2[0]!, RAW],
      ['--image-opts', 'driver=qcow2,file.filename=a.qcow2', 'driver=raw,file.filename=b.raw'],
      [QCOW2[2]!, 'json:{"driver":"raw","file":{"filename":"q.raw"}}'],
    ]) {
      const r = both(['compare', ...pair]);
      expect(r.blk, pair.join(' ')).toEqual(r.qemu);
      expect(r.blk.code).toBe(0);
    }
    const d = both(['dd', `if=${QCOW2[0]}`, 'of=dd.out', 'bs=64k', 'count=4']);
    expect(d.blk).toEqual(d.qemu);
    fs.renameSync(path.join(dir, 'dd.out'), path.join(dir, 'dd.qemu'));
    blk(['dd', `if=${QCOW2[0]}`, 'of=dd.out', 'bs=64k', 'count=4'], { cwd: dir });
    expect(fs.readFileSync(path.join(dir, 'dd.out')).equals(fs.readFileSync(path.join(dir, 'dd.qemu')))).toBe(true);
  });

  it("bad names: qemu-img's reasons, and its exit codes (compare: 2)", () => {
    const cases: string[][] = [
      ['info', 'json:{"driver":"qcow2"'],
      ['info', 'json:[1]'],
      ['info', "json:{'driver':'qcow2','file':{'filename':'a.qcow2'},'foo':1}"],
      ['check', 'json:{"driver":"qcow2","file":"a.qcow2"}'],
      ['info', '--image-opts', 'a.qcow2'],
      ['info', '--image-opts', '-f', 'qcow2', 'driver=qcow2,file.filename=a.qcow2'],
      ['compare', 'json:{', 'a.qcow2'],
      ['convert', '-O', 'raw', 'json:{"driver":"qcow2","file":{"filename":"a.qcow2"},"foo":1}', 'x.raw'],
    ];
    for (const args of cases) {
      const r = both(args);
      expect(r.blk, args.join(' ')).toEqual(r.qemu);
      expect(r.blk.code).not.toBe(0);
    }
  });

  it("a json: name whose file is a FIFO or a device: the error names that file (qemu-io's words for a FIFO)", () => {
    const fifo = path.join(dir, 'pipe');
    spawnSync('mkfifo', [fifo]);
    const name = `json:{"driver":"raw","file":{"filename":"${fifo}"}}`;
    const q = spawnSync('qemu-io', ['-c', 'read 0 512', name], { encoding: 'utf8', timeout: 20_000 });
    const b = blk(['io', '-c', 'read 0 512', name]);
    expect(b.stderr).toBe(q.stderr);
    expect(b.stderr).toContain(`'file' driver requires '${fifo}' to be a regular file`);
    expect(b.code).toBe(q.status);
    // qemu-io opens a character device (a 0-byte disk); blk refuses it, naming the file inside the name.
    const dev = blk(['io', '-c', 'read 0 512', 'json:{"driver":"file","filename":"/dev/null"}']);
    expect(dev.stderr).toContain(': /dev/null: is a character device');
    // The commands name the file the json: name holds (qemu-img info would wait on the FIFO forever).
    expect(blk(['info', name]).stderr).toBe(
      `blk: ${fifo}: is a FIFO (named pipe), not a regular file or a block device\n`,
    );
  });

  it("-f given wins over the name's driver, as in qemu-img", () => {
    const r = both(['info', '--output=json', '-f', 'raw', QCOW2[0]!]);
    expect(r.blk).toEqual(r.qemu);
    expect(JSON.parse(r.blk.out).format).toBe('raw');
  });
});
