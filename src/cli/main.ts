// The ext4kit command line: parses argv, runs one command (one file each) and maps failures to
// exit codes: 0 ok, 1 Ext4Error or host I/O error (one line on stderr), 2 usage error, 70 bug.
import { UsageError } from './args.ts';
import { errorLine } from './report.ts';
import * as cat from './cat.ts';
import * as check from './check.ts';
import * as demo from './demo.ts';
import * as get from './get.ts';
import * as info from './info.ts';
import * as ln from './ln.ts';
import * as ls from './ls.ts';
import * as mkdir from './mkdir.ts';
import * as mkfs from './mkfs.ts';
import * as mount from './mount.ts';
import * as mv from './mv.ts';
import * as put from './put.ts';
import * as rm from './rm.ts';
import * as stat from './stat.ts';
import * as truncate from './truncate.ts';
import * as umount from './umount.ts';

interface Command {
  run(argv: string[]): Promise<number>;
  summary: string;
}

const COMMANDS: Record<string, Command> = {
  mkfs: { run: mkfs.run, summary: 'create a filesystem image (mke2fs-like options)' },
  info: { run: info.run, summary: 'show the superblock summary (like dumpe2fs -h)' },
  ls: { run: ls.run, summary: 'list a directory' },
  cat: { run: cat.run, summary: 'write file contents to stdout' },
  stat: { run: stat.run, summary: "show one inode's metadata" },
  get: { run: get.run, summary: 'copy a file or a tree out to the host' },
  put: { run: put.run, summary: 'copy a host file or tree into the image (like cp -a)' },
  mkdir: { run: mkdir.run, summary: 'make directories' },
  rm: { run: rm.run, summary: 'remove files or trees' },
  mv: { run: mv.run, summary: 'rename or move an entry' },
  ln: { run: ln.run, summary: 'make a hard link or (-s) a symbolic link' },
  truncate: { run: truncate.run, summary: "set a file's size (holes when growing)" },
  check: { run: check.run, summary: 'check the invariants ext4kit relies on (next to e2fsck -fn)' },
  demo: { run: demo.run, summary: 'make a small image and show it' },
  mount: { run: mount.run, summary: 'serve an image on a directory through FUSE' },
  umount: { run: umount.run, summary: 'unmount an ext4kit mount and wait for its write-back' },
};

export const USAGE = `usage: ext4kit COMMAND [ARGS...]
commands:
${Object.entries(COMMANDS).map(([name, c]) => `  ${name.padEnd(8)} ${c.summary}`).join('\n')}
Run 'ext4kit COMMAND --help' for a command's options.`;

const EX_OK = 0, EX_ERROR = 1, EX_USAGE = 2, EX_SOFTWARE = 70;

export async function main(argv: readonly string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === '-h' || name === '--help' || name === 'help') {
    const out = name === undefined ? process.stderr : process.stdout;
    out.write(USAGE + '\n');
    return name === undefined ? EX_USAGE : EX_OK;
  }
  if (name === '--version' || name === '-V') {
    process.stdout.write('ext4kit 0.1.0\n');
    return EX_OK;
  }
  const cmd = Object.hasOwn(COMMANDS, name) ? COMMANDS[name] : undefined;
  if (!cmd) {
    process.stderr.write(`ext4kit: unknown command '${name}'\n${USAGE}\n`);
    return EX_USAGE;
  }
  // `--` ends options: `ext4kit rm IMG -- -h` removes a file named -h.
  const dashDash = rest.indexOf('--');
  const optionArgs = dashDash < 0 ? rest : rest.slice(0, dashDash);
  if (optionArgs.includes('--help') || optionArgs.includes('-h')) {
    try {
      await cmd.run(['--help']);
    } catch (e) {
      if (e instanceof UsageError && e.usage) {
        process.stdout.write(e.usage + '\n');
        return EX_OK;
      }
    }
    return EX_OK;
  }
  try {
    return await cmd.run(rest);
  } catch (e) {
    if (e instanceof UsageError) {
      process.stderr.write(`ext4kit ${name}: ${e.message}\n${e.usage ?? USAGE}\n`);
      return EX_USAGE;
    }
    const line = errorLine(e);
    if (line !== undefined) {
      process.stderr.write(line + '\n');
      return EX_ERROR;
    }
    process.stderr.write(`ext4kit: internal error (a bug; please report it):\n${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
    return EX_SOFTWARE;
  }
}

// A reader that stops early (`ext4kit cat IMG f | head`) is not an error.
process.stdout.on('error', (e: NodeJS.ErrnoException) => {
  if (e.code === 'EPIPE') process.exit(process.exitCode ?? 0);
  throw e;
});

process.exitCode = await main(process.argv.slice(2));
