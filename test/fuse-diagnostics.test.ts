// Diagnostics of a background server (`ext4kit mount` without -f has no terminal): its lines go
// to -o logfile=PATH, or by default to <run dir>/<id>.log beside its lock. A corrupt directory
// block met while serving fails those requests (EUCLEAN/EBADMSG), is reported once in the log,
// and the server stays up (other files still read, changes refused) until a clean unmount.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { basename, join } from 'node:path';
import { Ext4 } from '../src/node.ts';
import { runTool } from './support/oracles.ts';
import { cleanupTemp, tmpDirPath, tmpImagePath } from './support/images.ts';
import { fuseSkipReason, sh, shOk } from './fuse-support.ts';

after(() => cleanupTemp());

const skip = fuseSkipReason();
if (skip) console.log(`# fuse-diagnostics: skipping: ${skip}`);
const CLI = join(import.meta.dirname, '..', 'bin', 'ext4kit.js');

/** An image whose directory /d has a corrupt first block ('.' gets rec_len 3). */
async function damagedImage(): Promise<string> {
  const img = tmpImagePath('damaged');
  await Ext4.mkfs(img, { sizeBytes: 64 << 20, blockSize: 4096, timeSec: 1_700_000_000 });
  const fs = await Ext4.open(img);
  await fs.mkdir('/d');
  for (let i = 0; i < 5; i++) await fs.writeFile(`/d/f${i}`, `file ${i}\n`);
  await fs.writeFile('/ok', 'fine\n');
  await fs.close();
  const blk = Number((await shOk(`debugfs -R 'blocks /d' ${img} 2>/dev/null`)).trim().split(/\s+/)[0]);
  assert.ok(blk > 0);
  await shOk(`printf '\\x03\\x00' | dd of=${img} bs=1 seek=$((${blk} * 4096 + 4)) conv=notrunc status=none`);
  return img;
}

async function serveDamaged(img: string, mountArgs: string[], env: Record<string, string>): Promise<void> {
  const mnt = tmpDirPath('diag-mnt');
  const m = await runTool(process.execPath, [CLI, 'mount', ...mountArgs, img, mnt], { timeoutMs: 60_000, env: { ...process.env, ...env } });
  assert.equal(m.exitCode, 0, m.stderr);
  try {
    const r = await sh(`set +e; ls ${mnt}/d; ls ${mnt}/d/; stat ${mnt}/d/f1; cat ${mnt}/ok; touch ${mnt}/new; mountpoint ${mnt}`);
    assert.match(r.stderr, /Structure needs cleaning|Bad message/, 'the corrupt directory fails its requests');
    assert.match(r.stdout, /^fine$/m, 'other files still read');
    assert.match(r.stderr, /touch: .*Read-only file system/, 'no changes after a corrupt structure');
    assert.match(r.stdout, /is a mountpoint/, 'the server is still up');
  } finally {
    // The same run directory: umount finds the server there and waits for it to exit.
    const u = await runTool(process.execPath, [CLI, 'umount', mnt], { timeoutMs: 60_000, env: { ...process.env, ...env } });
    if (u.exitCode !== 0) await runTool('umount', ['-l', mnt]);
    assert.equal(u.exitCode, 0, `clean unmount: ${u.stderr}`);
  }
}

function checkLog(text: string, img: string): void {
  const reports = text.split('\n').filter((l) => /failed: /.test(l));
  assert.equal(reports.length, 1, `one report:\n${text}`);
  assert.match(reports[0]!, /^\S+Z \[\d+\] ext4kit mount: .* on inode \d+ failed: .*(inode|block).*read-only from now on/);
  assert.match(text, new RegExp(`${basename(img)} mounted on `));
  assert.match(text, /unmounted; .* written back/, 'the server logged its clean end');
}

test('a background server logs to -o logfile=PATH: a corrupt directory is reported once, the server stays up, the image is not written', { skip, timeout: 180_000 }, async () => {
  const img = await damagedImage();
  const before = await shOk(`sha256sum < ${img}`);
  const logFile = join(tmpDirPath('diag-log'), 'server.log');
  await serveDamaged(img, ['-o', `logfile=${logFile}`], {});
  checkLog(readFileSync(logFile, 'utf8'), img);
  assert.equal(await shOk(`sha256sum < ${img}`), before, 'the image was not written');
});

test('without logfile=, a background server logs beside its lock in the run directory', { skip, timeout: 180_000 }, async () => {
  const img = await damagedImage();
  const runDir = tmpDirPath('diag-run');
  await serveDamaged(img, [], { EXT4KIT_RUN_DIR: runDir });
  const logs = readdirSync(runDir).filter((f) => f.endsWith('.log'));
  assert.equal(logs.length, 1, `one log in ${runDir}: ${readdirSync(runDir).join(', ')}`);
  checkLog(readFileSync(join(runDir, logs[0]!), 'utf8'), img);
  assert.ok(!readdirSync(runDir).some((f) => f.endsWith('.json')), 'the lock is gone after unmount');
});

test('logfile= inside the mountpoint is refused (the server would wait on itself)', { skip }, async () => {
  const img = tmpImagePath('diag-usage');
  await Ext4.mkfs(img, { sizeBytes: 16 << 20 });
  const mnt = tmpDirPath('diag-usage-mnt');
  const r = await runTool(process.execPath, [CLI, 'mount', '-o', `logfile=${mnt}/x.log`, img, mnt], { timeoutMs: 60_000 });
  assert.notEqual(r.exitCode, 0);
  assert.match(r.stderr, /logfile= must be outside the mountpoint/);
  assert.ok(!existsSync(`${mnt}/x.log`));
});
