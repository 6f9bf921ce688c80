// Names on disk need not be UTF-8: byte paths (Uint8Array) reach every entry that readdir lists.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Ext4 } from '../src/node.ts';
import { haveE2fsprogs } from './support/oracles.ts';

test('an entry whose name is not UTF-8 is reachable by its raw bytes', { skip: haveE2fsprogs() ? false : 'e2fsprogs not installed' }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'ext4kit-bytes-'));
  const src = join(dir, 'src');
  const name = Buffer.from([0x62, 0x61, 0x64, 0xff, 0xfe, 0x2e, 0x74, 0x78, 0x74]); // "bad\xff\xfe.txt"
  execFileSync('mkdir', [src]);
  writeFileSync(Buffer.concat([Buffer.from(src + '/'), name]), 'not utf-8 name\n');
  const img = join(dir, 'img');
  execFileSync('mke2fs', ['-q', '-F', '-t', 'ext4', '-d', src, img, '8M']);
  const fs = await Ext4.open(img, { readOnly: true });
  const entry = (await fs.readdir('/', { withFileTypes: true })).find((d) => d.nameBytes.length === name.length);
  assert.ok(entry, 'listed');
  assert.deepEqual(Buffer.from(entry.nameBytes), name);
  const path = new Uint8Array([0x2f, ...entry.nameBytes]);
  assert.equal((await fs.lstat(path)).size, 15);
  assert.equal(new TextDecoder().decode(await fs.readFile(path)), 'not utf-8 name\n');
  await assert.rejects(fs.lstat('/' + entry.name), { code: 'ENOENT' });
  await fs.close();
});
