import { createHash } from 'node:crypto';

import { PaceOptionError } from '../errors';
import { formatValue, settingName } from '../report/labels';
import type { Setting, SettingValue } from './grid';

/** Longer run names keep their start and end in a hash of the whole, so folder names stay readable. */
const MAX_NAME = 100;
const KEPT = 80;

/** A path's name in run names: its last segment (`sigma`), or the whole path when two paths end alike. */
export function pathNames(paths: string[]): Map<string, string> {
  const lastOf = (path: string) => path.split('.').at(-1) as string;
  const ending = new Map<string, number>();
  for (const path of new Set(paths)) ending.set(lastOf(path), (ending.get(lastOf(path)) ?? 0) + 1);
  return new Map(paths.map((path) => [path, ending.get(lastOf(path))! > 1 ? path : lastOf(path)]));
}

/** A value as a person writes it: 0.5, 1e-4, lora, or JSON for objects and arrays. */
export function valueText(value: SettingValue): string {
  if (typeof value === 'number') return formatValue(value);
  if (typeof value === 'string') return value;
  return JSON.stringify(value);
}

/** Characters a folder name keeps; any run of others becomes one '-'. */
export function sanitize(text: string): string {
  return text.replace(/[^A-Za-z0-9._=+-]+/g, '-');
}

const hash = (text: string) => createHash('sha256').update(text).digest('hex').slice(0, 8);

/** What a run's name is made from. */
export interface NameParts {
  stage?: string;
  task?: string;
  setting: Setting;
  seed: number;
  /** How each path is named (see {@link pathNames}). */
  names: Map<string, string>;
}

/** The whole, unshortened description a run's name comes from. */
function describe(parts: NameParts): string {
  const settings = parts.setting.map(([path, value]) => `${parts.names.get(path) ?? path}=${valueText(value)}`);
  return [parts.stage, parts.task, ...settings, `seed=${parts.seed}`].filter((p) => p !== undefined).join('_');
}

/**
 * A run folder's name from its settings, e.g. `tune_dtd_sigma=0.5_lambda=1_seed=0`: parts joined by '_', each
 * sanitized for a file name; a name over 100 characters keeps its first 80 and ends with a hash of the whole.
 */
export function runName(parts: NameParts): string {
  const full = describe(parts);
  const name = sanitize(full);
  return name.length <= MAX_NAME ? name : `${name.slice(0, KEPT)}_${hash(full)}`;
}

/**
 * Names for a list of runs, all distinct: runs whose sanitized names coincide (`a b` and `a-b`, `0.5` and `'0.5'`)
 * get a hash of their settings appended.
 */
export function runNames(runs: NameParts[]): string[] {
  const names = runs.map(runName);
  const count = new Map<string, number>();
  for (const name of names) count.set(name, (count.get(name) ?? 0) + 1);
  const identity = (p: NameParts) => JSON.stringify([p.stage, p.task, p.setting, p.seed]);
  const distinct = names.map((name, i) => (count.get(name)! > 1 ? `${name}_${hash(identity(runs[i]))}` : name));
  // Only runs of one setting, stage, task and seed are named alike: one folder would hold two runs.
  const first = new Map<string, number>();
  distinct.forEach((name, i) => {
    const earlier = first.get(name);
    if (earlier !== undefined) {
      throw new PaceOptionError(
        `the sweep plans two runs of the same setting (runs ${earlier} and ${i}: ${identity(runs[i])}); each would ` +
          `write the folder ${name}`,
      );
    }
    first.set(name, i);
  });
  return distinct;
}

/** A setting as a label: `σ 0.5, λ 1` (the report's short names), or `base` for the base config alone. */
export function settingLabel(setting: Setting, paths: string[]): string {
  if (setting.length === 0) return 'base';
  return setting.map(([path, value]) => `${settingName(path, paths)} ${valueText(value)}`).join(', ');
}
