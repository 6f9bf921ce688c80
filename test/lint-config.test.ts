// The linter configuration (biome.json) must really reject unused code: a probe file with an
// unused import, variable, parameter and private member fails `biome lint` with those rules,
// and the same code without them (an intentionally unused parameter spelled `_x`) passes.
// The probe runs in a temporary copy of the configuration, so the repository is not touched.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const ROOT = join(import.meta.dirname, '..');
const BIOME = join(ROOT, 'node_modules', '.bin', 'biome');
const skip = existsSync(BIOME) ? false : 'biome is not installed (npm ci installs the @biomejs/biome devDependency)';

function lint(source: string): { status: number | null; rules: string[] } {
  const dir = mkdtempSync(join(tmpdir(), 'ext4kit-lint-'));
  try {
    const config = JSON.parse(readFileSync(join(ROOT, 'biome.json'), 'utf8')) as Record<string, unknown>;
    delete config.$schema;
    writeFileSync(join(dir, 'biome.json'), JSON.stringify(config));
    mkdirSync(join(dir, 'src'));
    writeFileSync(join(dir, 'src', 'probe.ts'), source);
    const r = spawnSync(BIOME, ['lint', '--reporter=json', '--max-diagnostics=50', 'src'], { cwd: dir, encoding: 'utf8' });
    const report = JSON.parse(r.stdout) as { diagnostics: Array<{ category: string }> };
    return { status: r.status, rules: report.diagnostics.map((d) => d.category).sort() };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const CLEAN = `import { join } from 'node:path';
export class Probe {
  #used = 1;
  size(_reserved: number): number { return this.#used; }
}
export function f(x: number, _y: number): string { const n = x + 1; return join('a', String(n)); }
`;

test('biome.json rejects unused imports, variables, parameters and private members', { skip }, () => {
  const broken = `import { join } from 'node:path';
import { tmpdir } from 'node:os';
export class Probe {
  #used = 1;
  #unused = 2;
  size(_reserved: number): number { return this.#used; }
}
export function f(x: number, y: number): string { const n = x + 1; const dead = 3; return join('a', String(n)); }
`;
  const r = lint(broken);
  assert.notEqual(r.status, 0, 'lint must fail');
  assert.deepEqual(r.rules, [
    'lint/correctness/noUnusedFunctionParameters',
    'lint/correctness/noUnusedImports',
    'lint/correctness/noUnusedPrivateClassMembers',
    'lint/correctness/noUnusedVariables',
  ]);
});

test('biome.json accepts the same code without them (`_` marks an intentionally unused parameter)', { skip }, () => {
  const r = lint(CLEAN);
  assert.deepEqual(r.rules, []);
  assert.equal(r.status, 0);
});
