#!/usr/bin/env node
// Starts the command line from the bundle dist/cli.mjs (built by `npm run build`, `npm test` and
// `npm pack`). In an installed package (no src/) the bundle is all there is. In the repository it
// runs only when it is newer than every source file it was built from; otherwise (a source edited
// since, no bundle, or EXT4KIT_FROM_SOURCE=1) src/cli/main.ts runs through tsx's loader, so an
// edit never runs stale code.
import { readFileSync, statSync } from 'node:fs';

const root = new URL('../', import.meta.url);
// Copy-in reads many small host files at once (on a worker thread): libuv's default of 4
// threads would cap that. Read once, at the pool's first use, so it must be set first.
process.env.UV_THREADPOOL_SIZE ??= '16';

function exists(rel) {
  try {
    statSync(new URL(rel, root));
    return true;
  } catch {
    return false;
  }
}

function bundleIsFresh() {
  if (process.env.EXT4KIT_FROM_SOURCE === '1') return false;
  // An installed package ships dist/ and no sources: nothing can be newer than the bundle.
  if (!exists('src/cli/main.ts')) return true;
  try {
    const { builtAtMs, inputs } = JSON.parse(readFileSync(new URL('dist/cli.json', root), 'utf8'));
    statSync(new URL('dist/cli.mjs', root));
    statSync(new URL('dist/host-tree-worker.mjs', root));
    statSync(new URL('dist/get-writer-worker.mjs', root));
    return inputs.every((p) => statSync(new URL(p, root)).mtimeMs < builtAtMs);
  } catch {
    return false;
  }
}

if (bundleIsFresh()) {
  await import(new URL('dist/cli.mjs', root).href);
} else {
  const { register } = await import('tsx/esm/api');
  register();
  await import(new URL('src/cli/main.ts', root).href);
}
