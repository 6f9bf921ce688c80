// The IMAGE argument of every command: a host path, optionally with `?offset=N` (bytes, or with a
// unit: 1M, 2048s), or `--offset N`, to reach a filesystem inside a partitioned disk image as
// debugfs does; or '-' for an image piped to standard input (read-only commands; held in memory).
// A missing image or a directory fails as ENOENT/EISDIR naming the path, before anything is opened.
import { stat } from 'node:fs/promises';
import { Ext4 } from '../node.ts';
import type { Ext4 as CoreExt4 } from '../api/ext4.ts';
import type { OpenOptions } from '../api/types.ts';
import { NodeFileDevice } from '../device/node-file-device.ts';
import { OffsetDevice } from '../device/offset-device.ts';
import { MemoryDevice } from '../device/memory-device.ts';
import { posixError } from '../errors/ext4-error.ts';
import { optionValue, UsageError, type ParsedArgs } from './args.ts';
import { printJournalWarnings } from './print.ts';

/** Options every image-opening command accepts (add to the command's parseArgs spec). */
export const IMAGE_OPTIONS = ['offset'] as const;
export const IMAGE_USAGE = `  --offset N  the filesystem starts N bytes into IMAGE (units: k, m, g, s = 512-byte sectors);
              IMAGE?offset=N says the same; IMAGE '-' reads the image from standard input`;

export interface ImageRef {
  path: string;
  offsetBytes: number | undefined;
}

/** Bytes with an optional unit (k, m, g, t: powers of 1024; s: 512-byte sectors); 0 allowed. */
export function parseOffset(text: string): number | undefined {
  const m = /^(\d+)([kmgts]?)$/i.exec(text.trim());
  if (!m) return undefined;
  const unit = { '': 1, k: 2 ** 10, m: 2 ** 20, g: 2 ** 30, t: 2 ** 40, s: 512 }[m[2]!.toLowerCase()]!;
  const n = Number(m[1]) * unit;
  return Number.isSafeInteger(n) ? n : undefined;
}

/** Splits `path?offset=N` and merges `--offset`. */
export function imageRef(arg: string, args: ParsedArgs): ImageRef {
  let path = arg;
  let offsetText = optionValue(args, 'offset');
  const q = /^(.*)\?offset=([^?]*)$/.exec(arg);
  if (q) {
    if (offsetText !== undefined) throw new UsageError(`both --offset and '${arg}' give an offset`, args.usage);
    path = q[1]!;
    offsetText = q[2]!;
  }
  if (offsetText === undefined) return { path, offsetBytes: undefined };
  const offsetBytes = parseOffset(offsetText);
  if (offsetBytes === undefined) throw new UsageError(`invalid offset '${offsetText}'`, args.usage);
  return { path, offsetBytes };
}

/** ENOENT or EISDIR naming the path, instead of a device error from deeper down. */
export async function checkImagePath(path: string, syscall = 'open'): Promise<void> {
  const st = await stat(path).catch((e: NodeJS.ErrnoException) => {
    if (e.code === 'ENOENT') throw posixError('ENOENT', syscall, path);
    if (e.code === 'ENOTDIR') throw posixError('ENOTDIR', syscall, path);
    throw e;
  });
  if (st.isDirectory()) throw posixError('EISDIR', syscall, path);
}

/** All of standard input (an image piped in: `curl URL | ext4kit ls - /`), held in memory. */
async function readStdin(): Promise<Uint8Array> {
  const parts: Uint8Array[] = [];
  let len = 0;
  for await (const chunk of process.stdin as AsyncIterable<Uint8Array>) { parts.push(chunk); len += chunk.length; }
  const out = new Uint8Array(len);
  let at = 0;
  for (const p of parts) { out.set(p, at); at += p.length; }
  return out;
}

/**
 * Opens the command's IMAGE argument ('-': read-only commands read the image from stdin) and
 * prints journal-recovery warnings on stderr (unless `journalWarnings: false`: the caller prints them).
 */
export async function openImage(arg: string, args: ParsedArgs, opts: OpenOptions = {}, print: { journalWarnings?: boolean } = {}): Promise<CoreExt4> {
  const fs = await openImageQuiet(arg, args, opts);
  if (print.journalWarnings !== false) printJournalWarnings(fs.info(), arg);
  return fs;
}

async function openImageQuiet(arg: string, args: ParsedArgs, opts: OpenOptions): Promise<CoreExt4> {
  // Commands give modes exactly (mkdir -m, copies keep their source's): no umask.
  opts = { umask: 0, ...opts };
  const ref = imageRef(arg, args);
  if (ref.path === '-') {
    if (!opts.readOnly) throw new UsageError("IMAGE '-' (standard input) can only be read; this command writes", args.usage);
    const bytes = await readStdin();
    const dev = new MemoryDevice(bytes, { readOnly: true });
    return Ext4.open(ref.offsetBytes ? new OffsetDevice(dev, ref.offsetBytes) : dev, opts);
  }
  await checkImagePath(ref.path);
  if (ref.offsetBytes === undefined || ref.offsetBytes === 0) return Ext4.open(ref.path, opts);
  const file = await NodeFileDevice.open(ref.path, { readOnly: opts.readOnly ?? false });
  try {
    return await Ext4.open(new OffsetDevice(file, ref.offsetBytes), opts);
  } catch (e) {
    await file.close();
    throw e;
  }
}
