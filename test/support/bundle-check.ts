// What a browser cannot load: `node:` built-ins a bundle still imports or requires.
export function nodeBuiltinsIn(bundleText: string): string[] {
  const found = new Set<string>();
  for (const m of bundleText.matchAll(/(?:from\s*|import\s*\(\s*|require\s*\(\s*|import\s+)["'](node:[a-z_/]+)["']/g)) found.add(m[1]!);
  return [...found].sort();
}
