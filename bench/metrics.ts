// Untimed measurements of a result image, for Competitor.metrics: how fragmented its files are.
import { withLoopMount, runTool, toolPath } from '../test/support/oracles.ts';

export interface ExtentStats {
  files: number;
  extents: number;
  /** Files with more than one extent. */
  fragmented: number;
  maxExtents: number;
}

/**
 * Extents per regular file, as `filefrag` counts them on a read-only loop mount (physically
 * contiguous runs; block-mapped files are counted the same way). Needs root and loop devices.
 */
export async function extentStats(image: string): Promise<ExtentStats> {
  return withLoopMount(image, async (mnt) => {
    const r = await runTool('sh', ['-c', `find "$1" -type f -print0 | xargs -0 -r ${toolPath('filefrag')}`, 'sh', mnt], { timeoutMs: 600_000 });
    if (r.exitCode !== 0) throw new Error(`filefrag failed: ${r.stderr.trim().split('\n').slice(0, 3).join(' ')}`);
    const s: ExtentStats = { files: 0, extents: 0, fragmented: 0, maxExtents: 0 };
    for (const line of r.stdout.split('\n')) {
      const m = /: (\d+) extents? found$/.exec(line);
      if (!m) continue;
      const n = Number(m[1]);
      s.files++;
      s.extents += n;
      if (n > 1) s.fragmented++;
      s.maxExtents = Math.max(s.maxExtents, n);
    }
    return s;
  }, { readOnly: true, options: ['noload'] });
}

/** Columns for a results table. */
export function extentColumns(s: ExtentStats): Record<string, string> {
  return {
    'extents/file': s.files ? (s.extents / s.files).toFixed(3) : '-',
    'fragmented': `${s.fragmented}/${s.files}`,
    'max extents': String(s.maxExtents),
  };
}
