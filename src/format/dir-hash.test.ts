import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  dirHash, effectiveHashVersion, DEFAULT_HASH_SEED, DX_HASH_HALF_MD4, DX_HASH_LEGACY, DX_HASH_TEA,
  DX_HASH_SIPHASH, EXT2_FLAGS_UNSIGNED_HASH,
} from './dir-hash.ts';
import { isExt4Error } from '../errors/ext4-error.ts';
import { uuidFromString } from '../util/bytes.ts';

const haveDebugfs = spawnSync('debugfs', ['-V']).status === 0;
const enc = (s: string): Uint8Array => new TextEncoder().encode(s);

/** Deterministic PRNG (mulberry32) so that failures reproduce. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

// debugfs's command parser splits on white space and interprets quotes and backslashes, and
// getopt would take a leading '-'; everything else (including bytes >= 0x80) passes unchanged.
const ASCII_OK = Array.from({ length: 0x7f - 0x21 }, (_, i) => 0x21 + i).filter((c) => !'"\\\'#'.includes(String.fromCharCode(c)));
const UTF8_WORDS = ['café', 'naïve', 'Ünïcødé', '日本語', 'Ελληνικά', 'emoji😀', 'Ωmega', 'ß'];

function randomName(r: () => number, len: number): Uint8Array {
  const out: number[] = [];
  const kind = r();
  while (out.length < len) {
    if (kind < 0.3) {
      out.push(ASCII_OK[Math.floor(r() * ASCII_OK.length)]!);
    } else if (kind < 0.6) {
      out.push(0x80 + Math.floor(r() * 0x80));
    } else if (kind < 0.8) {
      for (const b of enc(UTF8_WORDS[Math.floor(r() * UTF8_WORDS.length)]!)) out.push(b);
    } else {
      out.push(r() < 0.5 ? 0x80 + Math.floor(r() * 0x80) : ASCII_OK[Math.floor(r() * ASCII_OK.length)]!);
    }
  }
  const name = out.slice(0, len);
  if (name[0] === 0x2d) name[0] = 0x41;
  return Uint8Array.from(name);
}

function seedWords(uuid: string): number[] {
  const b = uuidFromString(uuid)!;
  const dv = new DataView(b.buffer);
  return [0, 4, 8, 12].map((o) => dv.getUint32(o, true));
}

test('dirHash: known values for "hello" (default seed)', () => {
  assert.deepEqual(dirHash(enc('hello'), DX_HASH_LEGACY, [0, 0, 0, 0]), { hash: 0x32252546, minorHash: 0 });
  assert.deepEqual(dirHash(enc('hello'), DX_HASH_HALF_MD4, [0, 0, 0, 0]), { hash: 0x1746da32, minorHash: 0x420013b5 });
  assert.deepEqual(dirHash(enc('hello'), DX_HASH_TEA, new Uint32Array(4)), { hash: 0x6f5bb1a8, minorHash: 0x231917c2 });
  // An all-zero seed means the default seed.
  assert.deepEqual(dirHash(enc('hello'), DX_HASH_TEA, [...DEFAULT_HASH_SEED]), dirHash(enc('hello'), DX_HASH_TEA, [0, 0, 0, 0]));
  // Empty name: no transform runs, the major hash is the seed word with the low bit cleared.
  assert.deepEqual(dirHash(new Uint8Array(0), DX_HASH_HALF_MD4, [0, 0, 0, 0]), { hash: 0xefcdab88, minorHash: 0x98badcfe });
});

test('dirHash: unknown versions are EUCLEAN, SipHash is ENOTSUP', () => {
  const check = (v: number, code: string, detail: string): void => {
    assert.throws(() => dirHash(enc('x'), v, [0, 0, 0, 0], { inode: 12 }), (e: unknown) =>
      isExt4Error(e) && e.code === code && e.detail === detail && e.where.inode === 12);
  };
  check(7, 'EUCLEAN', 'dir-hash-version');
  check(255, 'EUCLEAN', 'dir-hash-version');
  check(DX_HASH_SIPHASH, 'ENOTSUP', 'dir-hash-siphash');
});

test('dirHash: hashes are even and never the EOF cookie', () => {
  const r = rng(7);
  for (let i = 0; i < 2000; i++) {
    const name = randomName(r, 1 + Math.floor(r() * 40));
    for (let v = 0; v <= 5; v++) {
      const { hash } = dirHash(name, v, [1, 2, 3, 4]);
      assert.equal(hash & 1, 0);
      assert.notEqual(hash, 0xfffffffe);
    }
  }
});

test('effectiveHashVersion applies the superblock unsigned flag to versions 0..2 only', () => {
  assert.equal(effectiveHashVersion(1, 0), 1);
  assert.equal(effectiveHashVersion(1, EXT2_FLAGS_UNSIGNED_HASH), 4);
  assert.equal(effectiveHashVersion(0, EXT2_FLAGS_UNSIGNED_HASH | 1), 3);
  assert.equal(effectiveHashVersion(2, EXT2_FLAGS_UNSIGNED_HASH), 5);
  assert.equal(effectiveHashVersion(6, EXT2_FLAGS_UNSIGNED_HASH), 6);
});

test('dirHash matches debugfs dx_hash over random names, all six versions, two seeds', (t) => {
  if (!haveDebugfs) {
    t.skip('debugfs (e2fsprogs) is not installed');
    return;
  }
  const r = rng(0xd1a5);
  const names: Uint8Array[] = [];
  for (const len of [1, 2, 3, 4, 5, 7, 8, 15, 16, 17, 31, 32, 33, 47, 48, 63, 64, 65, 127, 128, 254, 255]) {
    names.push(randomName(r, len));
  }
  while (names.length < 320) names.push(randomName(r, 1 + Math.floor(r() * 255)));
  const seeds = ['00000000-0000-0000-0000-000000000000', '3f1b5a7c-9e2d-4c8b-a1f0-6d5e4c3b2a19'];

  const dir = mkdtempSync(join(tmpdir(), 'ext4kit-dirhash-'));
  try {
    const lines: Buffer[] = [];
    const expectations: { name: Uint8Array; version: number; seed: string }[] = [];
    for (const seed of seeds) {
      for (let v = 0; v <= 5; v++) {
        for (const name of names) {
          lines.push(Buffer.concat([Buffer.from(`dx_hash -h ${v} -s ${seed} `), Buffer.from(name), Buffer.from('\n')]));
          expectations.push({ name, version: v, seed });
        }
      }
    }
    const cmdFile = join(dir, 'cmds');
    writeFileSync(cmdFile, Buffer.concat(lines));
    const res = spawnSync('debugfs', ['-f', cmdFile], { maxBuffer: 64 << 20 });
    assert.equal(res.status, 0, res.stderr.toString());
    const out = res.stdout.toString('latin1').split('\n')
      .map((l) => /is 0x([0-9a-f]+) \(minor 0x([0-9a-f]+)\)$/.exec(l))
      .filter((m): m is RegExpExecArray => m !== null);
    assert.equal(out.length, expectations.length, 'one debugfs answer per name');
    let signedDiffers = 0;
    for (let i = 0; i < expectations.length; i++) {
      const { name, version, seed } = expectations[i]!;
      const got = dirHash(name, version, seedWords(seed));
      const want = { hash: parseInt(out[i]![1]!, 16), minorHash: parseInt(out[i]![2]!, 16) };
      assert.deepEqual(got, want, `version ${version} seed ${seed} name ${Buffer.from(name).toString('hex')}`);
      if (version < 3 && name.some((b) => b >= 0x80)) {
        const u = dirHash(name, version + 3, seedWords(seed));
        if (u.hash !== got.hash) signedDiffers++;
      }
    }
    // The high-byte names must actually exercise the signed/unsigned difference.
    assert.ok(signedDiffers > 100, `signedness changed only ${signedDiffers} hashes`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
