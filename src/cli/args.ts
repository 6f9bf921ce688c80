// The CLI's option parsing, on node:util's parseArgs: short flags (bundled: `-lR`), short options
// with a value (`-b 4096`, `-b4096`), long flags and options (`--json`, `--out=x`, `--out x`), `--`
// ending options; and the value parsers shared by commands (sizes with units, integers).
import { parseArgs as utilParseArgs } from 'node:util';

/** A command-line mistake: main prints the command's usage and exits 2. */
export class UsageError extends Error {
  override readonly name = 'UsageError';
  constructor(message: string, readonly usage?: string) {
    super(message);
  }
}

export interface ArgSpec {
  /** Options without a value, by name without dashes: 'l', 'json'. */
  flags?: readonly string[];
  /** Options that take a value. A repeated option keeps every value. */
  options?: readonly string[];
  /** Positional argument count bounds. */
  minPositionals?: number;
  maxPositionals?: number;
  usage: string;
}

export interface ParsedArgs {
  flags: Set<string>;
  options: Map<string, string[]>;
  positionals: string[];
  usage: string;
}

export function parseArgs(argv: readonly string[], spec: ArgSpec): ParsedArgs {
  const fail = (msg: string): never => {
    throw new UsageError(msg, spec.usage);
  };
  // node:util's parser: one-letter names are short options (bundled -lR, -b4096, -b 4096), longer
  // ones long options (--json, --out=x, --out x); `--` ends options. Every option may repeat.
  const config: Record<string, { type: 'boolean' | 'string'; short?: string; multiple: true }> = {};
  for (const name of spec.flags ?? []) config[name] = { type: 'boolean', multiple: true, ...(name.length === 1 ? { short: name } : {}) };
  for (const name of spec.options ?? []) config[name] = { type: 'string', multiple: true, ...(name.length === 1 ? { short: name } : {}) };
  // An option's value may start with '-' (`truncate -s -10M`), which node:util calls ambiguous:
  // glue such values to their option first (`-s-10M`, `--name=-x`), as getopt would read them.
  const glued: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === '--') { glued.push(...argv.slice(i)); break; }
    const next = argv[i + 1];
    const long = /^--([^=]+)$/.exec(arg);
    if (long && next !== undefined && config[long[1]!]?.type === 'string') { glued.push(`${arg}=${next}`); i++; continue; }
    if (/^-[^-]/.test(arg) && next !== undefined) {
      const last = arg[arg.length - 1]!;
      const leading = [...arg.slice(1, -1)];
      if (config[last]?.type === 'string' && leading.every((c) => config[c]?.type === 'boolean')) { glued.push(arg + next); i++; continue; }
    }
    glued.push(arg);
  }
  let tokens;
  try {
    ({ tokens } = utilParseArgs({ args: glued, options: config, strict: true, allowPositionals: true, tokens: true }));
  } catch (e) {
    const err = e as Error & { code?: string };
    if (typeof err.code !== 'string' || !err.code.startsWith('ERR_PARSE_ARGS')) throw e;
    fail(err.message.split('\n')[0]!.replace(/\. To specify a positional argument.*$/, ''));
  }
  const flags = new Set<string>();
  const options = new Map<string, string[]>();
  const positionals: string[] = [];
  for (const t of tokens!) {
    if (t.kind === 'positional') positionals.push(t.value);
    else if (t.kind === 'option') {
      // `-l` and `--l` both reach here; only the spelling the usage shows is accepted.
      if (t.name.length === 1 && t.rawName.startsWith('--')) fail(`unknown option ${t.rawName}`);
      if (t.name.length > 1 && !t.rawName.startsWith('--')) fail(`unknown option ${t.rawName}`);
      if (config[t.name]!.type === 'boolean') {
        if (t.value !== undefined) fail(`option ${t.rawName} takes no value`);
        flags.add(t.name);
      } else {
        const list = options.get(t.name);
        if (list) list.push(t.value!);
        else options.set(t.name, [t.value!]);
      }
    }
  }
  if (spec.minPositionals !== undefined && positionals.length < spec.minPositionals) fail('missing argument');
  if (spec.maxPositionals !== undefined && positionals.length > spec.maxPositionals) fail('too many arguments');
  return { flags, options, positionals, usage: spec.usage };
}

/** The last value of an option, or undefined. */
export function optionValue(args: ParsedArgs, name: string): string | undefined {
  const list = args.options.get(name);
  return list ? list[list.length - 1] : undefined;
}

/** A non-negative integer option value. */
export function intOption(args: ParsedArgs, name: string, what: string): number | undefined {
  const v = optionValue(args, name);
  if (v === undefined) return undefined;
  if (!/^\d+$/.test(v) || !Number.isSafeInteger(Number(v))) throw new UsageError(`invalid ${what} '${v}'`, args.usage);
  return Number(v);
}

const UNITS: Record<string, number> = { '': 1, k: 2 ** 10, m: 2 ** 20, g: 2 ** 30, t: 2 ** 40, p: 2 ** 50 };

/** A size such as 64M, 1G, 2T, 512k or plain bytes (binary units; an optional trailing 'B' or 'iB'). */
export function parseSize(text: string): number | undefined {
  const m = /^(\d+(?:\.\d+)?)([kmgtp]?)(?:i?b)?$/i.exec(text.trim());
  if (!m) return undefined;
  const unit = UNITS[m[2]!.toLowerCase()]!;
  const n = Number(m[1]) * unit;
  if (!Number.isSafeInteger(n) || n <= 0) return undefined;
  return n;
}
