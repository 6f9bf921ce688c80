// Keeps the architecture honest: layers import only downward, and the core (everything but the
// Node device, node.ts, cli/ and fuse/) imports no node: module, so it runs in a browser.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative, dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const SRC = resolve(dirname(fileURLToPath(import.meta.url)), '../src');

/** Rank of each top-level directory: a module may import only from its own rank or below. */
const RANK: Record<string, number> = {
  util: 0, errors: 0, format: 1, device: 1, cache: 2, journal: 3, layout: 3, alloc: 4, mapping: 5, dir: 6,
  pagecache: 7, fs: 8, mkfs: 8, api: 9, 'index.ts': 10, 'node.ts': 11, cli: 12, fuse: 10.5, // node.ts re-exports fuse's mount()
};
const NODE_ALLOWED = new Set(['device/node-file-device.ts', 'node.ts']);
const NODE_ALLOWED_DIRS = new Set(['cli', 'fuse']);

function* sources(dir: string): Generator<string> {
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) yield* sources(p);
    else if (p.endsWith('.ts') && !p.endsWith('.test.ts') && !p.includes('.test-util.')) yield p;
  }
}

const layerOf = (rel: string) => (rel.includes('/') ? rel.split('/')[0]! : rel);

/** Violations in one source file, `rel` being its path under src/. */
function checkImports(rel: string, text: string): string[] {
  const out: string[] = [];
  const layer = layerOf(rel);
  const rank = RANK[layer];
  if (rank === undefined) return [`${rel}: directory '${layer}' has no rank in the layer table`];
  for (const m of text.matchAll(/^\s*(?:import|export)\b[^'"]*?from\s+['"]([^'"]+)['"]/gm)) {
    const spec = m[1]!;
    if (spec.startsWith('node:')) {
      if (!NODE_ALLOWED.has(rel) && !NODE_ALLOWED_DIRS.has(layer)) out.push(`${rel}: imports ${spec} (core must stay browser-safe)`);
      continue;
    }
    if (!spec.startsWith('.')) continue;
    const target = relative(SRC, resolve(SRC, dirname(rel), spec));
    const tRank = RANK[layerOf(target)];
    if (tRank !== undefined && tRank > rank) out.push(`${rel}: imports ${target} from a higher layer`);
  }
  return out;
}

test('layers import only downward and the core imports no node: module', () => {
  const violations = [...sources(SRC)].flatMap((f) => checkImports(relative(SRC, f), readFileSync(f, 'utf8')));
  assert.deepEqual(violations, []);
});

test('the layer check catches upward and node: imports', () => {
  assert.deepEqual(checkImports('format/inode.ts', "import { Volume } from '../fs/volume.ts';"),
    ['format/inode.ts: imports fs/volume.ts from a higher layer']);
  assert.deepEqual(checkImports('dir/dir-read.ts', "import { readFile } from 'node:fs/promises';"),
    ['dir/dir-read.ts: imports node:fs/promises (core must stay browser-safe)']);
  assert.deepEqual(checkImports('cli/main.ts', "import { readFile } from 'node:fs/promises';\nimport { Ext4 } from '../node.ts';"), []);
});
