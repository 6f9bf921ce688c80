// What journal recovery found and did, for `info()` and the CLI (journal.md §2.8).

export interface JournalSummary {
  /** Journal inode (0: external journal). */
  inode: number;
  sizeBytes: number;
  countBlocks: number;
  /** jbd2 superblock version: 1 or 2. */
  version: number;
  /** Feature names as dumpe2fs prints them ("journal_64bit", "journal_checksum_v3", ...). */
  features: string[];
  /** 'none', 'crc32' (v1), 'crc32c' (v2/v3). */
  checksum: string;
  /** s_sequence and s_start as found on the image (before any replay). */
  sequence: number;
  start: number;
  errno: number;
  /** Fast-commit area size in blocks (0 without the feature). */
  fastCommitBlocks: number;
  /** Blocks of the fast-commit area holding commits for the next transaction (not replayed). */
  fastCommitBlocksUsed: number;
}

export interface JournalReport {
  summary: JournalSummary | undefined;
  /** needs_recovery set and the log not empty. */
  needsRecovery: boolean;
  /** Where the replay went: nowhere, into the in-memory overlay, or to the image. */
  applied: 'none' | 'in-memory' | 'on-disk';
  /** Complete transactions found in the log, and their tids [startTid, endTid). */
  transactions: number;
  startTid: number | undefined;
  endTid: number | undefined;
  /** Journal block where the log ends (after the last complete or partial transaction scanned). */
  headBlock: number | undefined;
  replayedBlocks: number;
  revokeRecords: number;
  revokedCopies: number;
  /** The commit of this tid failed its checksum: it and later ones were not replayed. */
  failedCommitTid: number | undefined;
  /** Blocks whose logged copy failed its tag checksum and was skipped. */
  tagChecksumErrors: number[];
  /** Fast-commit data exists for the transaction after the log and was not applied. */
  fastCommitNotApplied: boolean;
  /** Fast commits (each closed by a valid TAIL) applied after the full replay. */
  fastCommits: number;
  /** Orphans on the superblock's list after the replay (a writable open releases them). */
  orphansPending: boolean;
  /** Orphans a writable open released after the replay. */
  orphansReleased: number;
  /** Why recovery could not run (the image is then shown as it is, unrecovered). */
  error: string | undefined;
  warnings: string[];
}

export function emptyReport(): JournalReport {
  return {
    summary: undefined, needsRecovery: false, applied: 'none', transactions: 0, startTid: undefined, endTid: undefined, headBlock: undefined,
    replayedBlocks: 0, revokeRecords: 0, revokedCopies: 0, failedCommitTid: undefined, tagChecksumErrors: [],
    fastCommitNotApplied: false, fastCommits: 0, orphansPending: false, orphansReleased: 0, error: undefined, warnings: [],
  };
}
