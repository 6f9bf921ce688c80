// The whole build, run by `npm run build` and `npm pack` (prepack; there is no install script, so
// consumers of the tarball run nothing):
//  1. tsc -p tsconfig.build.json: the library as ESM JavaScript + .d.ts + source maps in dist/
//     (dist/index.js for browsers and bundlers, dist/node.js for Node);
//  2. scripts/build-cli.mjs: the command line bundled by esbuild into dist/cli.mjs (fast start-up).
// dist/ is emptied first so that a deleted or renamed source never leaves a stale module behind.
import { spawnSync } from 'node:child_process';
import { readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createRequire } from 'node:module';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const startedMs = Date.now();
rmSync(join(root, 'dist'), { recursive: true, force: true });
const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');
const r = spawnSync(process.execPath, [tsc, '-p', join(root, 'tsconfig.build.json')], { stdio: 'inherit', cwd: root });
if (r.status !== 0) {
  process.stderr.write(`ext4kit: tsc -p tsconfig.build.json failed (exit ${r.status ?? r.signal})\n`);
  process.exit(1);
}
// tsc rewrites `.ts` specifiers in the JavaScript only: declarations get `.js` too, so that any
// TypeScript version or declaration tool resolves them like the JavaScript next to them.
for (const entry of readdirSync(join(root, 'dist'), { recursive: true, withFileTypes: true })) {
  if (!entry.isFile() || !entry.name.endsWith('.d.ts')) continue;
  const file = join(entry.parentPath, entry.name);
  const text = readFileSync(file, 'utf8');
  const fixed = text.replace(/((?:from|import)\s*\(?\s*)(['"])(\.{1,2}\/[^'"]*?)\.ts\2/g, '$1$2$3.js$2');
  if (fixed !== text) writeFileSync(file, fixed);
}
process.stderr.write(`ext4kit: built the library into dist/ in ${Date.now() - startedMs} ms\n`);
await import('./build-cli.mjs');
