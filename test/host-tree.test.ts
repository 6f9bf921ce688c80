// The host tree reader (src/cli/host-tree.ts) over many batches: a tree of several thousand
// entries (the walker posts 512 records a batch and sleeps when 4 are unconsumed) read in copy-in's
// order by a consumer that now and then lets the walker run far ahead, and one that keeps it
// waiting. Every listing and entry must arrive, in order, with each small file's contents.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { HostTreeReader, isDirStat, joinHost } from '../src/cli/host-tree.ts';
import { tmpDirPath } from './support/images.ts';

const root = tmpDirPath('host-tree');
const DIRS = 3;
const FILES_PER_DIR = 1200;
const content = (d: number, f: number): Buffer => Buffer.from(`dir ${d} file ${f} `.repeat(1 + (f % 7)));

before(() => {
  for (let d = 0; d < DIRS; d++) {
    mkdirSync(join(root, `d${d}`), { recursive: true });
    for (let f = 0; f < FILES_PER_DIR; f++) writeFileSync(join(root, `d${d}`, `f${f}`), content(d, f));
  }
});
after(() => rmSync(root, { recursive: true, force: true }));

/** Reads the whole tree as copy-in does; `pause` runs before each entry is asked for. */
async function readAll(pause: (n: number) => Promise<void> | undefined): Promise<{ entries: number; files: Map<string, Buffer> }> {
  const reader = new HostTreeReader(Buffer.from(root), 256 << 10);
  const files = new Map<string, Buffer>();
  let entries = 0;
  try {
    const walk = async (dir: Buffer): Promise<void> => {
      const subdirs: Buffer[] = [];
      for (const name of await reader.listing(dir)) {
        const host = joinHost(dir, name);
        await pause(entries);
        const e = await reader.entry(host);
        entries++;
        if (isDirStat(e.st)) subdirs.push(host);
        else files.set(host.toString(), Buffer.from(e.data ?? new Uint8Array(0)));
      }
      for (const d of subdirs) await walk(d);
    };
    await walk(Buffer.from(root));
  } finally {
    await reader.close();
  }
  return { entries, files };
}

function check(r: { entries: number; files: Map<string, Buffer> }): void {
  assert.equal(r.entries, DIRS + DIRS * FILES_PER_DIR);
  for (let d = 0; d < DIRS; d++) {
    for (let f = 0; f < FILES_PER_DIR; f++) {
      const got = r.files.get(join(root, `d${d}`, `f${f}`));
      assert.ok(got, `d${d}/f${f} missing`);
      assert.ok(got.equals(content(d, f)), `d${d}/f${f}: wrong contents`);
    }
  }
}

test('a consumer that lets the walker fill its batches ahead and sleep gets every entry in order', async () => {
  // Every 700 entries, a pause long enough for the walker to post all it may and go to sleep.
  check(await readAll((n) => (n % 700 === 0 ? new Promise((r) => setTimeout(r, 30)) : undefined)));
});

test('a consumer that never pauses gets every entry in order', async () => {
  check(await readAll(() => undefined));
});
