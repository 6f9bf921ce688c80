// Text forms shared by the listing commands (ls, stat, get, check): modes, types, times, names
// that may not be UTF-8, image paths, device numbers; the journal-recovery warnings every
// command that opens an image prints.
const S_IFMT = 0o170000;
const TYPE_CHARS: Record<number, string> = {
  0o140000: 's', 0o120000: 'l', 0o100000: '-', 0o060000: 'b', 0o040000: 'd', 0o020000: 'c', 0o010000: 'p',
};

/** `drwxr-xr-x`, with s/S and t/T for set-id and sticky bits, as ls(1) prints it. */
export function modeString(mode: number): string {
  const type = TYPE_CHARS[mode & S_IFMT] ?? '?';
  const rwx = (shift: number, special: boolean, on: string, off: string): string => {
    const bits = (mode >> shift) & 7;
    const x = bits & 1 ? (special ? on : 'x') : special ? off : '-';
    return (bits & 4 ? 'r' : '-') + (bits & 2 ? 'w' : '-') + x;
  };
  return type + rwx(6, (mode & 0o4000) !== 0, 's', 'S') + rwx(3, (mode & 0o2000) !== 0, 's', 'S') + rwx(0, (mode & 0o1000) !== 0, 't', 'T');
}

export function fileTypeName(mode: number): string {
  switch (mode & S_IFMT) {
    case 0o100000: return 'regular file';
    case 0o040000: return 'directory';
    case 0o120000: return 'symbolic link';
    case 0o020000: return 'character special file';
    case 0o060000: return 'block special file';
    case 0o010000: return 'fifo';
    case 0o140000: return 'socket';
    default: return 'unknown';
  }
}

const pad2 = (n: number) => String(n).padStart(2, '0');

/** `YYYY-MM-DD HH:MM:SS` in UTC, with `.nnnnnnnnn` when `ns` is given. */
export function formatTimeNs(ns: bigint, withNs = true): string {
  const NS = 1_000_000_000n;
  let sec = ns / NS;
  let frac = ns % NS;
  if (frac < 0n) {
    frac += NS;
    sec -= 1n;
  }
  const d = new Date(Number(sec) * 1000);
  if (Number.isNaN(d.getTime())) return `@${sec}`;
  const y = d.getUTCFullYear();
  const year = y >= 0 && y <= 9999 ? String(y).padStart(4, '0') : String(y);
  const base = `${year}-${pad2(d.getUTCMonth() + 1)}-${pad2(d.getUTCDate())} ${pad2(d.getUTCHours())}:${pad2(d.getUTCMinutes())}:${pad2(d.getUTCSeconds())}`;
  return withNs ? `${base}.${String(frac).padStart(9, '0')}` : base;
}

const utf8Strict = new TextDecoder('utf-8', { fatal: true });

/** A name safe to print on a terminal: control characters and bytes that are not UTF-8 as `\ooo`. */
export function printableName(bytes: Uint8Array): string {
  let text: string | undefined;
  try {
    text = utf8Strict.decode(bytes);
  } catch {
    text = undefined;
  }
  if (text !== undefined) {
    // biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what it escapes
    return text.replace(/[\x00-\x1f\x7f]/g, (c) => '\\' + c.charCodeAt(0).toString(8).padStart(3, '0'));
  }
  let out = '';
  for (const b of bytes) {
    out += b < 0x20 || b >= 0x7f ? '\\' + b.toString(8).padStart(3, '0') : String.fromCharCode(b);
  }
  return out;
}

export function printablePath(path: string): string {
  return printableName(new TextEncoder().encode(path));
}

/** The image path of a directory entry. */
export function childPath(parent: string, name: string): string {
  return parent.endsWith('/') ? parent + name : `${parent}/${name}`;
}

export function normalizeImagePath(p: string | undefined): string {
  if (p === undefined || p === '') return '/';
  return p.startsWith('/') ? p : `/${p}`;
}

/** Linux dev_t (as glibc encodes it) → major, minor. */
export function devMajorMinor(rdev: number): [number, number] {
  const hi = Math.floor(rdev / 2 ** 32);
  const lo = rdev >>> 0;
  const major = ((lo >>> 8) & 0xfff) | ((hi & 0xfffff000) >>> 0);
  const minor = (lo & 0xff) | ((lo >>> 12) & 0xfff00);
  return [major >>> 0, minor >>> 0];
}

/**
 * Prints what journal recovery warned about (stale view, fast commits not applied, orphans,
 * ...) to stderr, one line each: every command that opens an image calls this once.
 */
export function printJournalWarnings(info: { journal?: { warnings: readonly string[] } | undefined }, image: string): void {
  for (const w of info.journal?.warnings ?? []) process.stderr.write(`ext4kit: warning: ${image}: ${w}\n`);
}
