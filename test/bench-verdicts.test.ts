// The benchmark's PASS/FAIL lines (bench/populate.ts) judge same-round ratios and peak RSS: a
// slower variant must FAIL, a faster one PASS, and the RSS line must look at warm and cold rows.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ratioVerdict, rssVerdict } from '../bench/populate.ts';
import { sameRoundRatio, type CompetitorResult, type SectionResult } from '../bench/harness.ts';

const row = (name: string, baseline: boolean, mode: 'cold' | 'warm', ms: number[], rssKiB = 1000): CompetitorResult => ({
  name, baseline, mode, runs: ms.map((wallMs) => ({ wallMs, peakRssKiB: rssKiB })), medianMs: [...ms].sort((a, b) => a - b)[ms.length >> 1], peakRssKiB: rssKiB,
});
const section = (results: CompetitorResult[]): SectionResult => ({ workload: 'w', title: 't', notes: [], results });

test('ratio verdicts compare rounds pairwise and fail a slower variant', () => {
  const ok = section([row('ext4kit get -r', true, 'warm', [100, 110, 120]), row('debugfs rdump', false, 'warm', [100, 120, 130])]);
  assert.match(ratioVerdict(ok, 'debugfs rdump', 'warm', 1.0, 'x'), /^PASS .*0\.92×/);
  const slow = section([row('ext4kit get -r', true, 'warm', [300, 310, 320]), row('debugfs rdump', false, 'warm', [100, 120, 130])]);
  assert.match(ratioVerdict(slow, 'debugfs rdump', 'warm', 1.0, 'x'), /^FAIL /);
  // Same rounds: a run that was slow for everyone does not count against the baseline.
  assert.equal(sameRoundRatio(row('a', true, 'warm', [100, 1000]), row('b', false, 'warm', [100, 1000])), 1);
  // Another cache mode's rows are not used.
  assert.match(ratioVerdict(ok, 'debugfs rdump', 'cold', 1.0, 'x'), /^N\/A .*no result/);
});

test('the RSS verdict takes the largest peak over both cache modes', () => {
  const s = section([row('ext4kit', true, 'cold', [1], 100 * 1024), row('ext4kit', true, 'warm', [1], 300 * 1024)]);
  assert.match(rssVerdict(s), /^FAIL .*300 MiB/);
  const fine = section([row('ext4kit', true, 'cold', [1], 100 * 1024), row('ext4kit', true, 'warm', [1], 200 * 1024)]);
  assert.match(rssVerdict(fine), /^PASS .*200 MiB/);
});
