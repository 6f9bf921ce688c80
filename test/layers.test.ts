// Keeps the architecture honest: layers import only downward, fs/ modules rank among themselves,
// no import cycle (type-only imports count), the core (everything but the Node device, node.ts,
// cli/ and fuse/) imports no node: module, so it runs in a browser, and the public export
// surface changes only on purpose.
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

/**
 * Rank of each fs/ module (Linux fs/ext4's shape): a module imports only modules of a lower
 * rank, so whoever changes one concern reads only what lies below it.
 */
const FS_RANK: Record<string, number> = {
  'clock.ts': 0, 'names.ts': 0, 'volume.ts': 0,
  'inline-data.ts': 1, 'dcache.ts': 1, 'path-walk.ts': 1, 'readdir.ts': 1, 'statfs.ts': 1,
  'readpage.ts': 2,
  'dir-source.ts': 3, 'inode-cache.ts': 3,
  'ext4-jbd2.ts': 4, 'balloc.ts': 4, 'page-io.ts': 4,
  'inode-env.ts': 5, 'orphan.ts': 5,
  'ialloc.ts': 6, 'xattr.ts': 6, 'quota.ts': 6,
  'writeback.ts': 7,
  'file.ts': 8, 'attr.ts': 8, 'fsync.ts': 8,
  'namei.ts': 9, 'invariants.ts': 9,
  'import.ts': 10, 'fast-commit-replay.ts': 10,
  'filesystem.ts': 11, 'mount-recovery.ts': 11.5,
  'mount.ts': 12,
};

/** Relative imports of one file (type-only ones included), as paths under src/. */
function importsOf(rel: string, text: string): string[] {
  const out: string[] = [];
  for (const m of text.matchAll(/^\s*(?:import|export)\b[^'"]*?from\s+['"]([^'"]+)['"]/gm)) {
    if (m[1]!.startsWith('.')) out.push(relative(SRC, resolve(SRC, dirname(rel), m[1]!)));
  }
  return out;
}

/** fs/ modules importing an fs/ module of the same or a higher rank, or one with no rank. */
function checkFsRanks(rel: string, text: string): string[] {
  if (!rel.startsWith('fs/')) return [];
  const own = FS_RANK[rel.slice(3)];
  if (own === undefined) return [`${rel}: fs/ module has no rank in FS_RANK`];
  return importsOf(rel, text).filter((t) => t.startsWith('fs/'))
    .filter((t) => (FS_RANK[t.slice(3)] ?? Infinity) >= own)
    .map((t) => `${rel}: imports ${t} of the same or a higher fs/ rank`);
}

/** Every import cycle (as a path a → b → … → a) in a graph of file → imported files. */
function findCycles(graph: ReadonlyMap<string, readonly string[]>): string[] {
  const cycles: string[] = [];
  const state = new Map<string, 'open' | 'done'>();
  const stack: string[] = [];
  const visit = (f: string): void => {
    state.set(f, 'open');
    stack.push(f);
    for (const t of graph.get(f) ?? []) {
      if (state.get(t) === 'open') cycles.push([...stack.slice(stack.indexOf(t)), t].join(' → '));
      else if (!state.has(t)) visit(t);
    }
    stack.pop();
    state.set(f, 'done');
  };
  for (const f of [...graph.keys()].sort()) if (!state.has(f)) visit(f);
  return cycles;
}

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

test('fs/ modules import only lower-ranked fs/ modules', () => {
  const violations = [...sources(SRC)].flatMap((f) => checkFsRanks(relative(SRC, f), readFileSync(f, 'utf8')));
  assert.deepEqual(violations, []);
});

test('the fs/ rank check catches an upward import', () => {
  assert.deepEqual(checkFsRanks('fs/volume.ts', "import type { OpenInode } from './inode-cache.ts';"),
    ['fs/volume.ts: imports fs/inode-cache.ts of the same or a higher fs/ rank']);
  assert.deepEqual(checkFsRanks('fs/namei.ts', "import type {\n  OpenInode,\n} from './inode-cache.ts';"), []);
  assert.deepEqual(checkFsRanks('fs/new-thing.ts', ''), ['fs/new-thing.ts: fs/ module has no rank in FS_RANK']);
});

test('no import cycles, type-only imports included', () => {
  const graph = new Map<string, string[]>();
  for (const f of sources(SRC)) {
    const rel = relative(SRC, f);
    graph.set(rel, importsOf(rel, readFileSync(f, 'utf8')));
  }
  assert.deepEqual(findCycles(graph).filter((c) => !KNOWN_CYCLES.includes(c)), []);
});

/** Cycles that predate the check, each to be broken by its owner (then removed from here). */
const KNOWN_CYCLES: string[] = [];

test('the cycle check catches a cycle made of type-only imports', () => {
  const graph = new Map([
    ['fs/volume.ts', importsOf('fs/volume.ts', "import { InodeData } from './file-data.ts';")],
    ['fs/file-data.ts', importsOf('fs/file-data.ts', "import type { Volume } from './volume.ts';")],
  ]);
  assert.deepEqual(findCycles(graph), ['fs/file-data.ts → fs/volume.ts → fs/file-data.ts']);
});

/**
 * Names exported by each entry point (types included) as the TypeScript checker sees them, and
 * the public members of the first entry's Ext4 class.
 */
async function publicSurface(entries: string[]): Promise<{ exports: string[][]; ext4Members: string[] }> {
  const ts = (await import('typescript')).default;
  const program = ts.createProgram(entries, {
    allowImportingTsExtensions: true, noEmit: true, module: ts.ModuleKind.NodeNext,
    moduleResolution: ts.ModuleResolutionKind.NodeNext, target: ts.ScriptTarget.ES2022, skipLibCheck: true,
    lib: ['lib.es2022.d.ts', 'lib.dom.d.ts', 'lib.esnext.disposable.d.ts'],
  });
  const checker = program.getTypeChecker();
  const exports = entries.map((entry) => {
    const sym = checker.getSymbolAtLocation(program.getSourceFile(entry)!);
    assert.ok(sym, `${entry} is not a module`);
    return checker.getExportsOfModule(sym);
  });
  const ext4 = exports[0]!.find((s) => s.name === 'Ext4');
  assert.ok(ext4);
  const hidden = ts.ModifierFlags.Private | ts.ModifierFlags.Protected;
  const ext4Members = checker.getPropertiesOfType(checker.getDeclaredTypeOfSymbol(ext4))
    .filter((p) => !p.valueDeclaration || !(ts.getCombinedModifierFlags(p.valueDeclaration) & hidden))
    .map((p) => p.name).sort();
  return { exports: exports.map((list) => list.map((s) => s.name).sort()), ext4Members };
}

/** The public surface. Changing it is a decision: update this list and the CHANGELOG together. */
const INDEX_EXPORTS = [
  'BlobDevice', 'BlockDevice', 'Ext4', 'Ext4BigIntStats', 'Ext4DirPage', 'Ext4Dirent', 'Ext4Error', 'Ext4ErrorCode',
  'Ext4FileHandle', 'Ext4Info', 'Ext4StatFs', 'Ext4Stats', 'FallocateMode', 'FileDevice', 'HttpRangeDevice',
  'HttpRangeDeviceOptions', 'MemoryDevice', 'MkfsOptions', 'MkfsResult', 'OffsetDevice', 'OpenOptions', 'PathLike',
  'ReadFileOptions', 'ReadResult', 'WriteResult', 'isExt4Error',
];
const EXT4_MEMBERS = [
  '__@asyncDispose@', 'appendFile', 'checkInvariants', 'chmod', 'chown', 'close', 'createReadStream', 'fallocate', 'getxattr',
  'importFile', 'info', 'journalInfo', 'lchown', 'link', 'listxattr', 'lstat', 'lutimes', 'mappings', 'mkdir', 'mknod', 'open', 'readFile',
  'readOnly', 'readdir', 'readdirFrom', 'readlink', 'readlinkBytes', 'realpath', 'removexattr', 'rename', 'rm', 'rmdir',
  'setQuotaLimits', 'setxattr', 'stat', 'statfs', 'symlink', 'sync', 'truncate', 'umask', 'unlink', 'utimes', 'writeFile',
  'writebackPass',
];

test('the public export surface of src/index.ts and src/node.ts matches the snapshot', async () => {
  const surface = await publicSurface([join(SRC, 'index.ts'), join(SRC, 'node.ts')]);
  assert.deepEqual(surface.exports[0], INDEX_EXPORTS);
  assert.deepEqual(surface.exports[1], [...INDEX_EXPORTS, 'FuseMount', 'FuseMountOptions', 'NodeFileDevice', 'mount'].sort());
  assert.deepEqual(surface.ext4Members.map((n) => n.replace(/@\d+$/, '@')), EXT4_MEMBERS);
  const { Ext4 } = await import('../src/index.ts');
  assert.equal(typeof (Ext4.prototype as unknown as Record<symbol, unknown>)[Symbol.asyncDispose], 'function');
});
