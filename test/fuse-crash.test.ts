// A killed server: `ext4kit mount -f` is SIGKILLed in the middle of a workload of fsynced
// files, an fsynced append log and unsynced noise. The image is left needing recovery; the
// next ext4kit mount replays the journal, and separately (on a copy) the kernel's loop mount
// does: every fsynced file is intact, the log's fsynced prefix is there, and e2fsck -fn is clean.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { copyFile, readFile } from 'node:fs/promises';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Ext4 } from '../src/node.ts';
import { e2fsck, loopMountSupport, runTool, withLoopMount } from './support/oracles.ts';
import { cleanupTemp, tmpDirPath, tmpImagePath } from './support/images.ts';
import { fuseSkipReason, sh, shOk } from './fuse-support.ts';

after(() => cleanupTemp());

const base = fuseSkipReason(['python3']);
const loop = base ? { ok: false, reason: base } : await loopMountSupport();
const skip: string | false = base || (!loop.ok ? `loop mounts unavailable: ${loop.reason}` : false);
if (skip) console.log(`# fuse-crash: skipping: ${skip}`);
const CLI = join(import.meta.dirname, '..', 'bin', 'ext4kit.js');

// Each fsynced file is recorded (name, md5) only after fsync returned; the append log's
// durable length likewise. Unsynced noise (appends, renames, unlinks) goes on meanwhile.
const WORKLOAD = `
import os, sys, hashlib, random
mnt, record = sys.argv[1], sys.argv[2]
r = random.Random(7)
os.makedirs(mnt + '/synced', exist_ok=True)
logfd = os.open(mnt + '/append.log', os.O_CREAT | os.O_WRONLY | os.O_APPEND, 0o644)
logged = 0
rec = open(record, 'a')
for i in range(100000):
    data = os.urandom(r.choice([1, 3000, 4096, 70000, 300000]))
    name = 'synced/f%05d' % i
    fd = os.open(mnt + '/' + name, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o644)
    os.write(fd, data); os.fsync(fd); os.close(fd)
    line = ('entry %05d ' % i).encode() * 20 + b'\\n'
    os.write(logfd, line); os.fsync(logfd); logged += len(line)
    rec.write('%s %s %d\\n' % (name, hashlib.md5(data).hexdigest(), logged)); rec.flush()
    with open(mnt + '/noise%d' % (i % 4), 'ab') as n: n.write(os.urandom(20000))
    if i % 3 == 0 and os.path.exists(mnt + '/noise1'): os.rename(mnt + '/noise1', mnt + '/moved%d' % (i % 5))
    if i % 5 == 0:
        for f in os.listdir(mnt):
            if f.startswith('moved'): os.unlink(mnt + '/' + f); break
`;

/** Lines "name md5 loggedBytes" of what was fsynced before the kill. */
function synced(record: string): Array<{ name: string; md5: string; logged: number }> {
  return readFileSync(record, 'utf8').split('\n').filter((l) => /^\S+ [0-9a-f]{32} \d+$/.test(l)).map((l) => {
    const [name, md5, logged] = l.split(' ') as [string, string, string];
    return { name, md5, logged: Number(logged) };
  });
}

async function checkSurvivors(root: string, done: ReturnType<typeof synced>, label: string): Promise<void> {
  const sums = await shOk(`cd ${root} && md5sum ${done.map((d) => d.name).join(' ')}`);
  for (const d of done) assert.match(sums, new RegExp(`^${d.md5}  ${d.name}$`, 'm'), `${label}: fsynced ${d.name} intact`);
  const log = await readFile(join(root, 'append.log'));
  const want = done[done.length - 1]!.logged;
  assert.ok(log.length >= want, `${label}: append.log has its fsynced ${want} bytes (${log.length})`);
  for (let i = 0; i < done.length; i++) {
    const line = Buffer.from(`entry ${String(i).padStart(5, '0')} `.repeat(20) + '\n');
    assert.ok(log.subarray(i * line.length, (i + 1) * line.length).equals(line), `${label}: append.log line ${i}`);
  }
}

async function waitMounted(mnt: string, server: { exitCode: number | null }): Promise<void> {
  for (let i = 0; i < 600; i++) {
    if (readFileSync('/proc/self/mounts', 'utf8').split('\n').some((l) => l.split(' ')[1] === mnt)) return;
    if (server.exitCode !== null) throw new Error(`server exited (${server.exitCode}) before mounting`);
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error('mount did not appear');
}

test('SIGKILL of the server mid-workload: the next ext4kit mount and the kernel each recover the journal; fsynced data intact; e2fsck clean', { skip, timeout: 10 * 60_000 }, async () => {
  const img = tmpImagePath('crash');
  await Ext4.mkfs(img, { sizeBytes: 256 << 20, timeSec: 1_700_000_000 });
  const mnt = tmpDirPath('crash-mnt');
  const record = join(tmpDirPath('crash-rec'), 'record');
  const server = spawn(process.execPath, [CLI, 'mount', '-f', img, mnt], { stdio: ['ignore', 'ignore', 'pipe'] });
  let serverLog = '';
  server.stderr.on('data', (d: Buffer) => { serverLog += d.toString(); });
  const exited = new Promise<void>((resolve) => server.on('exit', () => resolve()));
  try {
    await waitMounted(mnt, server);
    const work = sh(`python3 -c '${WORKLOAD.replace(/'/g, "'\\''")}' ${mnt} ${record}`, { timeoutMs: 300_000 });
    // Kill once a few dozen files were fsynced: the workload is then mid-flight.
    for (let i = 0; i < 1200; i++) {
      await new Promise((r) => setTimeout(r, 100));
      try { if (synced(record).length >= 30) break; } catch { /* not yet written */ }
    }
    server.kill('SIGKILL');
    await exited;
    const w = await work;
    assert.notEqual(w.exitCode, 0, 'the workload was cut off by the kill');
  } finally {
    if (server.exitCode === null && server.signalCode === null) server.kill('SIGKILL');
    await runTool('umount', ['-l', mnt]);
  }
  const done = synced(record);
  assert.ok(done.length >= 30, `fsynced before the kill: ${done.length}\n${serverLog}`);
  const dumpe = await shOk(`dumpe2fs -h ${img} 2>/dev/null | grep -i features`);
  assert.match(dumpe, /needs_recovery/, 'the killed server left the journal to replay');
  const kimg = tmpImagePath('crash-kernel');
  await copyFile(img, kimg);

  // ext4kit: the next mount replays the journal (the stale lock of the killed server is ignored).
  const m = await runTool(process.execPath, [CLI, 'mount', img, mnt], { timeoutMs: 120_000 });
  assert.equal(m.exitCode, 0, m.stderr);
  try {
    await checkSurvivors(mnt, done, 'ext4kit');
  } finally {
    const u = await runTool(process.execPath, [CLI, 'umount', mnt], { timeoutMs: 120_000 });
    if (u.exitCode !== 0) await runTool('umount', ['-l', mnt]);
  }
  const f1 = await e2fsck(img);
  assert.equal(f1.exitCode, 0, `e2fsck after the ext4kit recovery:\n${f1.output}`);

  // The kernel, on the copy: its loop mount replays the journal.
  await withLoopMount(kimg, (kmnt) => checkSurvivors(kmnt, done, 'kernel'));
  const f2 = await e2fsck(kimg);
  assert.equal(f2.exitCode, 0, `e2fsck after the kernel's recovery:\n${f2.output}`);
});
