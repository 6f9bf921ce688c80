// The CLI's option parser: short flags (bundled: `-lR`), short options with a value (`-b 4096`,
// `-b4096`), long flags and options (`--json`, `--out=x`, `--out x`), and `--` ending options.

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
  const flags = new Set<string>();
  const options = new Map<string, string[]>();
  const positionals: string[] = [];
  const isFlag = (n: string) => spec.flags?.includes(n) ?? false;
  const isOption = (n: string) => spec.options?.includes(n) ?? false;
  const fail = (msg: string): never => {
    throw new UsageError(msg, spec.usage);
  };
  const addOption = (name: string, value: string) => {
    const list = options.get(name);
    if (list) list.push(value);
    else options.set(name, [value]);
  };

  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === '--') {
      positionals.push(...argv.slice(i + 1));
      break;
    }
    if (arg.startsWith('--')) {
      const eq = arg.indexOf('=');
      const name = eq < 0 ? arg.slice(2) : arg.slice(2, eq);
      if (isFlag(name)) {
        if (eq >= 0) fail(`option --${name} takes no value`);
        flags.add(name);
      } else if (isOption(name)) {
        if (eq >= 0) addOption(name, arg.slice(eq + 1));
        else if (i + 1 < argv.length) addOption(name, argv[++i]!);
        else fail(`option --${name} needs a value`);
      } else {
        fail(`unknown option --${name}`);
      }
      continue;
    }
    if (arg.startsWith('-') && arg.length > 1) {
      for (let j = 1; j < arg.length; j++) {
        const name = arg[j]!;
        if (isFlag(name)) {
          flags.add(name);
        } else if (isOption(name)) {
          if (j + 1 < arg.length) addOption(name, arg.slice(j + 1));
          else if (i + 1 < argv.length) addOption(name, argv[++i]!);
          else fail(`option -${name} needs a value`);
          break;
        } else {
          fail(`unknown option -${name}`);
        }
      }
      continue;
    }
    positionals.push(arg);
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
