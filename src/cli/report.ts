// One-line error reports shared by main (a command's failure) and commands that go on after a
// failed operand (`rm a b c`, `mkdir -p x y`), as coreutils do.
import { isExt4Error } from '../errors/ext4-error.ts';

/** A Node system error from host I/O (ENOENT on DEST, EACCES, ENOSPC...): the user's problem, not a bug. */
export function isSystemError(e: unknown): e is NodeJS.ErrnoException & { code: string } {
  return e instanceof Error && typeof (e as NodeJS.ErrnoException).code === 'string' &&
    typeof (e as NodeJS.ErrnoException).errno === 'number' && typeof (e as NodeJS.ErrnoException).syscall === 'string';
}

function oneLine(s: string): string {
  return s.replace(/\s*\n\s*/g, ' ').trim();
}

/** `ext4kit: CODE: message` for an Ext4Error or a host system error; undefined for anything else (a bug). */
export function errorLine(e: unknown): string | undefined {
  if (!isExt4Error(e) && !isSystemError(e)) return undefined;
  const msg = oneLine(e.message);
  return `ext4kit: ${e.code}: ${msg.startsWith(`${e.code}: `) ? msg.slice(e.code.length + 2) : msg}`;
}

/** Runs `op` for each operand; prints expected errors and goes on; rethrows bugs. Returns the exit code. */
export async function forEachOperand(operands: readonly string[], op: (x: string) => Promise<void>): Promise<number> {
  let failed = false;
  for (const x of operands) {
    try {
      await op(x);
    } catch (e) {
      const line = errorLine(e);
      if (line === undefined) throw e;
      process.stderr.write(line + '\n');
      failed = true;
    }
  }
  return failed ? 1 : 0;
}
