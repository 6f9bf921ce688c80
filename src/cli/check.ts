// `ext4kit check IMAGE`: runs ext4kit's own consistency checks on an image and says plainly what
// they cover and what they do not (e2fsck -fn is the full check). The image is never written: it
// is mounted writable (the invariant checker needs the allocator's state) over a copy-on-write
// device whose writes stay in memory.
import type { BlockDevice } from '../device/block-device.ts';
import { NodeFileDevice } from '../device/node-file-device.ts';
import { OffsetDevice } from '../device/offset-device.ts';
import { Ext4 } from '../node.ts';
import type { Ext4 as CoreExt4 } from '../api/ext4.ts';
import { isExt4Error } from '../errors/ext4-error.ts';
import { parseArgs } from './args.ts';
import { checkImagePath, IMAGE_OPTIONS, IMAGE_USAGE, imageRef } from './image.ts';
import { childPath, printablePath } from './ls.ts';
import { printJournalWarnings } from './print.ts';

export const CHECK_USAGE = `usage: ext4kit check [--json] IMAGE
  checks what ext4kit relies on, without writing to IMAGE:
   - the superblock, group descriptors, bitmaps' counters and metadata checksums it reads
   - the free-space accounting: the free-cluster count equals the block bitmaps (per group
     and in total), allocator windows, quota usage against every inode's i_blocks
   - every directory, file and symlink reads back (extent trees, block maps, inline data,
     htree blocks, directory entry records)
  does not check (run e2fsck -fn IMAGE for these): blocks claimed twice or leaked, link counts
  against directory entries, the inode bitmap against inodes in use, orphan lists, the journal's
  contents, htree hash order, extended attribute blocks' reference counts, quota limits.
  --json  print the result as a JSON object
${IMAGE_USAGE}
example:
  ext4kit check disk.img && e2fsck -fn disk.img`;

/** Reads go to the image; writes go to memory, by 4 KiB page (the image is never written). */
class CopyOnWriteDevice implements BlockDevice {
  readonly readOnly = false;
  private readonly pages = new Map<number, Uint8Array>();
  private static readonly PAGE = 4096;
  constructor(private readonly inner: BlockDevice) {}
  get sizeBytes(): number { return this.inner.sizeBytes; }
  async read(offsetBytes: number, lenBytes: number): Promise<Uint8Array> {
    const out = await this.inner.read(offsetBytes, lenBytes);
    if (this.pages.size === 0) return out;
    const P = CopyOnWriteDevice.PAGE;
    for (let p = Math.floor(offsetBytes / P); p * P < offsetBytes + lenBytes; p++) {
      const page = this.pages.get(p);
      if (!page) continue;
      const from = Math.max(offsetBytes, p * P);
      const to = Math.min(offsetBytes + lenBytes, (p + 1) * P);
      out.set(page.subarray(from - p * P, to - p * P), from - offsetBytes);
    }
    return out;
  }
  async write(offsetBytes: number, data: Uint8Array): Promise<void> {
    const P = CopyOnWriteDevice.PAGE;
    for (let p = Math.floor(offsetBytes / P); p * P < offsetBytes + data.length; p++) {
      let page = this.pages.get(p);
      if (!page) {
        const len = Math.min(P, this.inner.sizeBytes - p * P);
        page = new Uint8Array(P);
        page.set(await this.inner.read(p * P, len));
        this.pages.set(p, page);
      }
      const from = Math.max(offsetBytes, p * P);
      const to = Math.min(offsetBytes + data.length, (p + 1) * P);
      page.set(data.subarray(from - offsetBytes, to - offsetBytes), from - p * P);
    }
  }
  async flush(): Promise<void> {}
  close(): Promise<void> { return this.inner.close(); }
}

interface WalkCounts { directories: number; files: number; symlinks: number; other: number; bytes: number }

async function walk(fs: CoreExt4, dir: string, counts: WalkCounts): Promise<void> {
  counts.directories++;
  for (const d of await fs.readdir(dir, { withFileTypes: true })) {
    const path = childPath(dir, d.name);
    if (d.isDirectory()) await walk(fs, path, counts);
    else if (d.isSymbolicLink()) { await fs.readlinkBytes(path); counts.symlinks++; }
    else if (d.isFile()) {
      const reader = fs.createReadStream(path).getReader();
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        counts.bytes += value.length;
      }
      counts.files++;
    } else {
      await fs.lstat(path);
      counts.other++;
    }
  }
}

export async function run(argv: string[]): Promise<number> {
  const args = parseArgs(argv, { flags: ['json'], options: [...IMAGE_OPTIONS], minPositionals: 1, maxPositionals: 1, usage: CHECK_USAGE });
  const ref = imageRef(args.positionals[0]!, args);
  await checkImagePath(ref.path);
  const counts: WalkCounts = { directories: 0, files: 0, symlinks: 0, other: 0, bytes: 0 };
  const json = args.flags.has('json');
  let failure: string | undefined;
  let invariants: 'checked' | 'skipped (the image cannot be mounted writable)' = 'checked';
  const file = await NodeFileDevice.open(ref.path, { readOnly: true });
  let fs: CoreExt4 | undefined;
  try {
    const base: BlockDevice = ref.offsetBytes ? new OffsetDevice(file, ref.offsetBytes) : file;
    fs = await Ext4.open(new CopyOnWriteDevice(base));
    printJournalWarnings(fs.info(), args.positionals[0]!);
    if (fs.readOnly) invariants = 'skipped (the image cannot be mounted writable)';
    else await fs.checkInvariants();
    await walk(fs, '/', counts);
  } catch (e) {
    // An Ext4Error (corrupt or unsupported structure) or the invariant checker's Error.
    if (!isExt4Error(e) && !(e instanceof Error && e.constructor === Error)) throw e;
    failure = isExt4Error(e) ? `${e.code}: ${e.message.replace(new RegExp(`^${e.code}: `), '')}` : e.message;
  } finally {
    if (fs) await fs.close().catch(() => undefined);
    else await file.close();
  }
  if (json) {
    process.stdout.write(JSON.stringify({ image: ref.path, ok: failure === undefined, failure: failure ?? null, invariants, ...counts }, null, 2) + '\n');
  } else {
    const lines = [
      `${printablePath(ref.path)}: ${failure === undefined ? 'OK' : 'FAILED'}`,
      `  accounting invariants: ${invariants}`,
      `  read back: ${counts.directories} directories, ${counts.files} files (${counts.bytes} bytes), ${counts.symlinks} symlinks, ${counts.other} other`,
      ...(failure === undefined ? [] : [`  error: ${failure}`]),
      '  not checked here (run e2fsck -fn): block ownership, link counts, inode bitmap, orphans, journal, htree order',
    ];
    process.stdout.write(lines.join('\n') + '\n');
  }
  return failure === undefined ? 0 : 1;
}
