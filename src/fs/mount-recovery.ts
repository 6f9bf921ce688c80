// Finishing recovery at mount time, above the journal replay: fast commits applied on top of
// the replayed image (in an overlay, then written home for a writable open), and the orphans
// a crash left released into an overlay for a read-only open. Both run a writable filesystem
// without the log on a scratch view of an in-memory overlay; the image is written only by
// the fast-commit write-back of a writable open.
import { type BlockDevice } from '../device/block-device.ts';
import { OverlayDevice } from '../device/overlay-device.ts';
import { Ext4Error } from '../errors/ext4-error.ts';
import { RO_COMPAT } from '../format/features.ts';
import type { RecoverResult } from '../journal/replay/recover.ts';
import type { JournalReport } from '../journal/replay/report.ts';
import { applyFastCommits } from './fast-commit-replay.ts';
import { releaseOrphanList } from './namei.ts';
import { Volume } from './volume.ts';
import { Filesystem, writeBlocker } from './filesystem.ts';

/** Orphans on the superblock's list or in the orphan file. */
export function hasOrphans(vol: Volume): boolean {
  return vol.sb.lastOrphan !== 0 || (vol.sb.featureRoCompat & RO_COMPAT.orphan_present) !== 0;
}

/** A device over `overlay` that takes writes (into memory) whatever its base says. */
function scratchView(overlay: OverlayDevice): BlockDevice {
  return {
    get sizeBytes() { return overlay.sizeBytes; }, readOnly: false,
    read: (o, n) => overlay.read(o, n), write: (o, d) => overlay.write(o, d),
    flush: async () => undefined, close: async () => undefined,
  };
}

/**
 * Applies fast commits on top of the full replay held in `replayed` (an overlay), in a layer
 * of their own: a filesystem without the log is mounted on it, applies the records and closes.
 * A writable open then writes the merged view home: every changed chunk but the journal
 * superblock's (the superblock's last), flush, then the journal superblock's, flush — until
 * that last write the log still holds everything, and replaying it again is idempotent. On an
 * Ext4Error a writable open fails without writing; a read-only one shows the full replay only,
 * with a warning.
 */
export async function replayFastCommits(replayed: BlockDevice, fc: NonNullable<RecoverResult['fastCommit']>, report: JournalReport): Promise<BlockDevice> {
  const size = replayed instanceof OverlayDevice ? replayed.changedChunks().chunkBytes : 4096;
  const top = new OverlayDevice(replayed, size);
  let vol: Volume | undefined;
  try {
    vol = await Volume.open(scratchView(top), {});
    const why = writeBlocker(vol);
    if (why) throw new Ext4Error('ENOTSUP', `cannot apply fast commits: ${why}`, { detail: 'jbd2-fast-commit' });
    const fs = await Filesystem.mount(vol, { journal: 'bypass' });
    await applyFastCommits(fs, fc.records);
    await fs.close();
  } catch (e) {
    if (!(e instanceof Ext4Error) || fc.writeBack) throw e;
    report.fastCommitNotApplied = true;
    report.fastCommits = 0;
    report.warnings.push(`fast commits were not applied (${e.message}): the read-only view lacks the last fsync'd changes (e2fsck or a kernel mount replays them)`);
    return replayed;
  } finally {
    await vol?.close();
  }
  if (!fc.writeBack) return top;
  const home = fc.writeBack;
  const chunks = new Set([...(replayed instanceof OverlayDevice ? replayed.changedChunks().offsetsBytes : []), ...top.changedChunks().offsetsBytes]);
  const jsbChunk = Math.floor(fc.jsbOffsetBytes / size) * size;
  const copy = async (off: number) => home.write(off, await top.read(off, Math.min(size, top.sizeBytes - off)));
  for (const off of [...chunks].sort((a, b) => a - b)) if (off !== 0 && off !== jsbChunk) await copy(off);
  await home.flush();
  if (chunks.has(0)) { await copy(0); await home.flush(); }
  if (chunks.has(jsbChunk)) { await copy(jsbChunk); await home.flush(); }
  return home;
}

/**
 * The orphans of the image on `device` released into an in-memory overlay (the replay's, or a
 * new one over the image): a writable filesystem without the log is mounted on it, releases
 * them and closes. Returns the overlay, or undefined (with a warning) when ext4kit cannot write
 * this image or the orphans are damaged; the image itself is never written.
 */
export async function releaseOrphansInMemory(device: BlockDevice, report: JournalReport): Promise<BlockDevice | undefined> {
  // A layer of its own (over the replay's overlay, if any): a failed release is dropped whole.
  const overlay = new OverlayDevice(device, 4096);
  const scratch = scratchView(overlay);
  const warn = (why: string) => {
    report.orphansPending = true;
    report.warnings.push(`orphan inodes (unlinked or truncated while open) are still allocated in the read-only view (${why}); e2fsck or a kernel mount releases them`);
    return undefined;
  };
  let vol: Volume | undefined;
  try {
    vol = await Volume.open(scratch, {});
    const why = writeBlocker(vol);
    if (why) return warn(why);
    const fs = await Filesystem.mount(vol, { journal: 'bypass' });
    report.orphansReleased = await releaseOrphanList(fs);
    await fs.close();
    report.orphansPending = false;
    return overlay;
  } catch (e) {
    if (!(e instanceof Ext4Error)) throw e;
    return warn(e.message);
  } finally {
    await vol?.close();
  }
}
