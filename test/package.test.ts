// The published package, as a user gets it: `npm pack` of a copy of the repository (so the
// repository's own dist/ is never rebuilt under other tests), installed from the tarball into a
// fresh project without the network, then used the ways users use it: plain Node ESM, CommonJS
// require(esm), strict TypeScript under nodenext and bundler resolution, an esbuild browser bundle,
// and the installed CLI.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { cpSync, mkdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';
import { cleanupTemp, tmpDirPath } from './support/images.ts';
import { e2fsck, haveCommand, haveE2fsprogs } from './support/oracles.ts';
import { nodeBuiltinsIn } from './support/bundle-check.ts';

const REPO = join(dirname(fileURLToPath(import.meta.url)), '..');
const TSC = join(REPO, 'node_modules', 'typescript', 'bin', 'tsc');
const haveNpm = haveCommand('npm');
const skip = !haveNpm ? 'npm not found (Debian package npm, or Node.js from nodejs.org)' : false;

interface Run { code: number; stdout: string; stderr: string }

function run(cmd: string, args: readonly string[], cwd: string, env: NodeJS.ProcessEnv = {}): Run {
  const r = spawnSync(cmd, args, { cwd, encoding: 'utf8', env: { ...process.env, ...env }, timeout: 300_000 });
  return { code: r.status ?? -1, stdout: r.stdout ?? '', stderr: r.stderr ?? String(r.error ?? '') };
}

function ok(r: Run, what: string): string {
  assert.equal(r.code, 0, `${what} failed (exit ${r.code}):\n${r.stdout}\n${r.stderr}`);
  return r.stdout;
}

describe('the npm package, installed from its tarball', { skip }, () => {
  let tarball = '';
  let consumer = '';
  let entries: string[] = [];

  before(() => {
    // A copy of what `npm pack` reads; node_modules is shared (tsc and esbuild for prepack).
    const work = tmpDirPath('pkg-src');
    for (const p of ['package.json', 'tsconfig.json', 'tsconfig.build.json', 'README.md', 'CHANGELOG.md', 'scripts', 'src', 'bin']) {
      cpSync(join(REPO, p), join(work, p), { recursive: true });
    }
    symlinkSync(join(REPO, 'node_modules'), join(work, 'node_modules'));
    const out = tmpDirPath('pkg-out');
    const packed = ok(run('npm', ['pack', '--json', '--pack-destination', out], work), 'npm pack');
    const info = JSON.parse(packed.slice(packed.indexOf('['))) as { filename: string; files: { path: string }[] }[];
    tarball = join(out, info[0]!.filename);
    entries = info[0]!.files.map((f) => f.path).sort();

    consumer = tmpDirPath('pkg-consumer');
    writeFileSync(join(consumer, 'package.json'), JSON.stringify({ name: 'consumer', private: true, type: 'module' }));
    // No network: the tarball has no dependencies; --ignore-scripts would hide an install script,
    // which the manifest check below refuses anyway.
    ok(run('npm', ['install', '--offline', '--no-audit', '--no-fund', tarball], consumer), 'npm install of the tarball');
    mkdirSync(join(consumer, 'node_modules', '@types'), { recursive: true });
    symlinkSync(join(REPO, 'node_modules', '@types', 'node'), join(consumer, 'node_modules', '@types', 'node'));
  });
  after(cleanupTemp);

  test('the tarball holds dist/ and the bin, and no sources, tests, benchmarks or CI files', () => {
    for (const need of ['package.json', 'bin/ext4kit.js', 'dist/index.js', 'dist/index.d.ts', 'dist/node.js', 'dist/node.d.ts', 'dist/node.js.map', 'dist/cli.mjs', 'dist/host-tree-worker.mjs', 'dist/get-writer-worker.mjs', 'README.md']) {
      assert.ok(entries.includes(need), `${need} missing from the tarball`);
    }
    const unwanted = entries.filter((p) => /^(test|bench|src|scripts|\.ci)\//.test(p) || /\.test\.|\.ts$/.test(p.replace(/\.d\.ts$/, '')) || p === 'dist/cli.json');
    assert.deepEqual(unwanted, []);
  });

  test('the manifest has no runtime dependencies and no install scripts', () => {
    const pkg = JSON.parse(readFileSync(join(consumer, 'node_modules', 'ext4kit', 'package.json'), 'utf8')) as Record<string, unknown>;
    assert.equal(pkg.dependencies, undefined);
    const scripts = (pkg.scripts ?? {}) as Record<string, string>;
    for (const s of ['preinstall', 'install', 'postinstall', 'prepare']) assert.equal(scripts[s], undefined, `install script ${s}`);
  });

  test('plain Node ESM: mkfs a file, write, read back; e2fsck -fn is clean', { skip: haveE2fsprogs() ? false : 'e2fsprogs not installed (Debian package e2fsprogs)' }, async () => {
    const img = join(consumer, 'esm.img');
    writeFileSync(join(consumer, 'esm.mjs'), `
import { Ext4 } from 'ext4kit';
const img = process.argv[2];
await Ext4.mkfs(img, { sizeBytes: 16 << 20 });
const fs = await Ext4.open(img);
await fs.mkdir('/dir');
await fs.writeFile('/dir/hello.txt', new TextEncoder().encode('hello from the tarball'));
await fs.close();
const ro = await Ext4.open(img, { readOnly: true });
process.stdout.write(new TextDecoder().decode(await ro.readFile('/dir/hello.txt')));
await ro.close();
`);
    assert.equal(ok(run(process.execPath, ['esm.mjs', img], consumer), 'ESM consumer'), 'hello from the tarball');
    const fsck = await e2fsck(img);
    assert.equal(fsck.exitCode, 0, fsck.output);
  });

  test('CommonJS: require("ext4kit") loads the ESM build (require(esm))', () => {
    writeFileSync(join(consumer, 'cjs.cjs'), `
const { Ext4, MemoryDevice, NodeFileDevice, Ext4Error } = require('ext4kit');
(async () => {
  const dev = new MemoryDevice(8 << 20);
  await Ext4.mkfs(dev, {});
  const fs = await Ext4.open(dev);
  await fs.writeFile('/a', new Uint8Array([1, 2, 3]));
  const back = await fs.readFile('/a');
  await fs.close();
  console.log(typeof NodeFileDevice, typeof Ext4Error, Array.from(back).join(','));
})();
`);
    const r = run(process.execPath, ['cjs.cjs'], consumer);
    assert.equal(ok(r, 'CJS consumer').trim(), 'function function 1,2,3');
  });

  for (const resolution of ['nodenext', 'bundler'] as const) {
    test(`strict TypeScript consumer (exactOptionalPropertyTypes) type-checks under ${resolution}`, () => {
      const dir = join(consumer, `ts-${resolution}`);
      mkdirSync(dir);
      const source = `import { Ext4, MemoryDevice, Ext4Error, type Ext4Stats } from 'ext4kit';
const dev = new MemoryDevice(8 << 20);
await Ext4.mkfs(dev, { label: 'typed' });
const fs = await Ext4.open(dev, { readOnly: false });
const names: string[] = await fs.readdir('/');
const st: Ext4Stats = await fs.stat('/');
const isDir: boolean = st.isDirectory();
const err: unknown = new Ext4Error('ENOENT', 'x');
console.log(names, isDir, err instanceof Ext4Error);
`;
      writeFileSync(join(dir, 'good.ts'), source);
      // The deliberately wrong file shows the types are real (an untyped `any` import would pass).
      writeFileSync(join(dir, 'bad.ts'), source + `const wrong: number = await fs.readdir('/');\nexport { wrong };\n`);
      const base = {
        strict: true, exactOptionalPropertyTypes: true, noEmit: true, skipLibCheck: false, target: 'es2022',
        module: resolution === 'nodenext' ? 'nodenext' : 'esnext', moduleResolution: resolution,
        ...(resolution === 'nodenext' ? { types: ['node'] } : { types: [], lib: ['es2022', 'dom'] }),
      };
      for (const f of ['good', 'bad']) {
        writeFileSync(join(dir, `tsconfig.${f}.json`), JSON.stringify({ compilerOptions: base, files: [`${f}.ts`] }));
      }
      // A package.json with "type": "module" makes .ts files ESM under nodenext (top-level await).
      writeFileSync(join(dir, 'package.json'), JSON.stringify({ type: 'module' }));
      ok(run(process.execPath, [TSC, '-p', 'tsconfig.good.json'], dir), `tsc (${resolution})`);
      const bad = run(process.execPath, [TSC, '-p', 'tsconfig.bad.json'], dir);
      assert.notEqual(bad.code, 0, 'the deliberately wrong consumer must fail to type-check');
      assert.match(bad.stdout, /bad\.ts\(\d+,\d+\): error TS2322/);
    });
  }

  test('an esbuild browser bundle of the package imports no node: built-ins', async () => {
    writeFileSync(join(consumer, 'page.js'), `import { Ext4, MemoryDevice, FileDevice, HttpRangeDevice } from 'ext4kit';
globalThis.ext4kit = { Ext4, MemoryDevice, FileDevice, HttpRangeDevice };\n`);
    const bundle = await build({ absWorkingDir: consumer, entryPoints: ['page.js'], bundle: true, platform: 'browser', format: 'esm', write: false, metafile: true, logLevel: 'silent' });
    const text = bundle.outputFiles[0]!.text;
    assert.deepEqual(nodeBuiltinsIn(text), []);
    const inputs = Object.keys(bundle.metafile.inputs);
    assert.ok(inputs.some((p) => p.endsWith('ext4kit/dist/index.js')), 'the browser condition picks dist/index.js');
    assert.ok(!inputs.some((p) => p.endsWith('ext4kit/dist/node.js')), 'dist/node.js must not reach a browser bundle');
    assert.ok(text.includes('HttpRangeDevice'), 'the browser devices are exported');
    // The checker itself: the Node entry, bundled the same way, is caught.
    writeFileSync(join(consumer, 'node-entry.js'), `export * from 'ext4kit/node';\n`);
    const wrong = await build({ absWorkingDir: consumer, entryPoints: ['node-entry.js'], bundle: true, platform: 'browser', format: 'esm', write: false, external: ['node:*'], logLevel: 'silent' });
    assert.ok(nodeBuiltinsIn(wrong.outputFiles[0]!.text).includes('node:fs'));
  });

  test('the installed CLI runs from dist/ (no tsx in the consumer): --help and mkfs', { skip: haveE2fsprogs() ? false : 'e2fsprogs not installed (Debian package e2fsprogs)' }, async () => {
    const bin = join(consumer, 'node_modules', '.bin', 'ext4kit');
    const help = run(bin, ['--help'], consumer);
    assert.match(ok(help, 'ext4kit --help'), /^usage: ext4kit COMMAND/);
    const img = join(consumer, 'cli.img');
    ok(run(bin, ['mkfs', '-q', img, '8M'], consumer), 'ext4kit mkfs');
    const fsck = await e2fsck(img);
    assert.equal(fsck.exitCode, 0, fsck.output);
  });
});
