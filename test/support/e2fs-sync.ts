// Synchronous e2fsprogs helpers for codec unit tests that build small fixture images.
import { spawnSync } from 'node:child_process';

export const HAVE_TOOLS = spawnSync('mke2fs', ['-V']).status === 0 && spawnSync('debugfs', ['-V']).status === 0;
export const SKIP: false | string = HAVE_TOOLS ? false : 'mke2fs/debugfs not installed';
/** Fixed time for reproducible fixtures. */
export const ENV = { ...process.env, E2FSPROGS_FAKE_TIME: '1700000000' };

/** Runs a tool and returns its stdout; throws with its stderr on failure. */
export function run(cmd: string, args: string[], input?: string): string {
  const r = spawnSync(cmd, args, { encoding: 'utf8', env: ENV, input, maxBuffer: 1 << 28 });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed (${r.status}): ${r.stderr}`);
  return r.stdout;
}

/** Runs several debugfs commands in one process; returns each command's output. */
export function debugfsBatch(img: string, cmds: string[]): string[] {
  return run('debugfs', ['-f', '-', img], cmds.join('\n') + '\n').split(/^debugfs: .*$/m).slice(1);
}
