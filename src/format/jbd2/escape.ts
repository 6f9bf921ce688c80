// Escaping of logged copies: a filesystem block whose first 4 bytes are the jbd2 magic is logged
// with them zeroed (and the tag's ESCAPE flag set), so the log scanner never mistakes it for a
// log block; replay writes the magic back.
import { JBD2_MAGIC } from './superblock.ts';
import { setU32be } from '../../util/bytes.ts';
import { hasJbd2Magic } from './header.ts';

/** The bytes to put in the log for `block`, and whether they were escaped. `block` is not changed. */
export function escapeBlock(block: Uint8Array): { logged: Uint8Array; escaped: boolean } {
  if (!hasJbd2Magic(block)) return { logged: block, escaped: false };
  const logged = block.slice();
  logged.fill(0, 0, 4);
  return { logged, escaped: true };
}

/** The filesystem block a logged copy stands for (a copy; the magic restored when escaped). */
export function unescapeBlock(logged: Uint8Array, escaped: boolean): Uint8Array {
  const out = logged.slice();
  if (escaped) setU32be(out, 0, JBD2_MAGIC);
  return out;
}
