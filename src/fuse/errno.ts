// Failures the FUSE layer decides itself (errno codes the engine's Ext4Error does not carry),
// and the mapping of any failure to the errno of the reply.
import { Ext4Error } from '../errors/ext4-error.ts';
import { ERRNO, type ErrnoName } from './protocol.ts';
import { ProtocolError } from './wire.ts';

export class FuseErrno extends Error {
  override readonly name = 'FuseErrno';
  constructor(readonly code: ErrnoName, message: string) { super(`${code}: ${message}`); }
}

/** errno for a failure, and whether it is unexpected (a bug or a corrupt structure: reported). */
export function errnoOf(e: unknown): { errno: number; report: 'corrupt' | 'bug' | undefined } {
  if (e instanceof FuseErrno) return { errno: ERRNO[e.code], report: undefined };
  if (e instanceof ProtocolError) return { errno: ERRNO.EINVAL, report: 'bug' };
  if (e instanceof Ext4Error) {
    const errno = (ERRNO as Record<string, number>)[e.code] ?? ERRNO.EIO;
    const corrupt = e.code === 'EUCLEAN' || e.code === 'EBADMSG' || e.code === 'EIO';
    return { errno, report: corrupt ? 'corrupt' : undefined };
  }
  return { errno: ERRNO.EIO, report: 'bug' };
}
