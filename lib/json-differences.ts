/** One place where two JSON values differ: its path (`grid.trainer.pace.sigma[1]`, '' for the whole value). */
export interface JsonDifference {
  path: string;
  before: unknown;
  after: unknown;
}

const isRecord = (value: unknown): value is Record<string, unknown> =>
  typeof value === 'object' && value !== null && !Array.isArray(value);

/**
 * Every place two JSON values differ, in the order of their keys (the first value's, then the second's new
 * ones) and array indices: objects and arrays are compared member by member, anything else as a whole.
 */
export function jsonDifferences(a: unknown, b: unknown, at = ''): JsonDifference[] {
  if (JSON.stringify(a) === JSON.stringify(b)) return [];
  let found: JsonDifference[] = [];
  if (Array.isArray(a) && Array.isArray(b)) {
    for (let i = 0; i < Math.max(a.length, b.length); i++) found.push(...jsonDifferences(a[i], b[i], `${at}[${i}]`));
  } else if (isRecord(a) && isRecord(b)) {
    for (const key of new Set([...Object.keys(a), ...Object.keys(b)])) {
      found.push(...jsonDifferences(a[key], b[key], at ? `${at}.${key}` : key));
    }
  }
  if (found.length === 0) found = [{ path: at, before: a, after: b }];
  return found;
}

/** Every leaf of a JSON value as [path, its JSON], sorted by path: a value's settings, for comparing them elsewhere. */
export function jsonLeaves(value: unknown, at = ''): [string, string][] {
  const leaves: [string, string][] = [];
  const walk = (node: unknown, path: string): void => {
    if (Array.isArray(node) && node.length > 0) node.forEach((item, i) => walk(item, `${path}[${i}]`));
    else if (isRecord(node) && Object.keys(node).length > 0) {
      for (const [key, item] of Object.entries(node)) walk(item, path ? `${path}.${key}` : key);
    } else leaves.push([path, typeof node === 'bigint' ? `${node}n` : (JSON.stringify(node) ?? String(node))]);
  };
  walk(value, at);
  return leaves.sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
}
