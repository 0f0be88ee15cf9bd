import type { RunRecord } from './read-runs';

/** A setting's value as the report compares and shows it (arrays as their JSON text). */
export type SettingValue = string | number | boolean | null;

/**
 * Settings that say where or how a run was made, not what it was, and the training set's checksums (no name for
 * a difference): never a difference between runs.
 */
const IGNORED = new Set(['fit.runDir', 'fit.resume', 'fit.resumeFrom', 'fit.progress', 'data.fingerprint']);

/** Settings that repeat a run rather than change it: runs differing only in these share a colour. */
export const REPEAT_KEYS = new Set(['trainer.seed', 'fit.shuffleSeed']);

/** A sweep's run's task, as its plan names it: the setting that stands for its `data.*` settings in labels. */
const TASK = 'task';

/** The colours runs cycle through (d3's Tableau 10, charts.ts); past them, groups are told apart by dashes. */
const RUN_COLOURS = 10;

/** Short names for the settings most often compared (others are named by their last path segment). */
const SHORT_NAMES: Record<string, string> = {
  [TASK]: 'task',
  'trainer.pace.sigma': 'σ',
  'trainer.pace.lambda': 'λ',
  'trainer.optimizer.lr': 'lr',
  'trainer.optimizer.weightDecay': 'wd',
  'trainer.seed': 'seed',
  'model.adapters.type': 'adapter',
  'model.adapters.rank': 'rank',
  'fit.batchSize': 'batch',
};

/** Deeper than any run config nests (about 4 levels): a deeper value is shown as this, not walked. */
const MAX_SETTING_DEPTH = 16;

/**
 * A run's config as `path.to.setting → value`, without the settings that are not differences (IGNORED). One map is
 * filled on the way down (a map per level, copied up, made a deep config quadratic), to {@link MAX_SETTING_DEPTH}.
 */
export function flattenSettings(
  config: unknown,
  prefix = '',
  settings = new Map<string, SettingValue>(),
  depth = 0,
): Map<string, SettingValue> {
  if (typeof config !== 'object' || config === null) return settings;
  for (const [key, value] of Object.entries(config)) {
    const name = prefix ? `${prefix}.${key}` : key;
    if (IGNORED.has(name) || value === undefined) continue;
    if (typeof value === 'object' && value !== null && !Array.isArray(value)) {
      if (depth + 1 < MAX_SETTING_DEPTH) flattenSettings(value, name, settings, depth + 1);
      else settings.set(name, `(nested more than ${MAX_SETTING_DEPTH} levels deep)`);
    } else {
      settings.set(name, Array.isArray(value) ? JSON.stringify(value) : (value as SettingValue));
    }
  }
  return settings;
}

/** Settings with short names first (σ, λ, lr, ...), in SHORT_NAMES' order, then the others by name. */
function byImportance(a: string, b: string): number {
  const order = Object.keys(SHORT_NAMES);
  const rank = (key: string) => (order.includes(key) ? order.indexOf(key) : order.length);
  return rank(a) - rank(b) || (a < b ? -1 : a > b ? 1 : 0);
}

/** The settings whose values are not the same in every run (a setting missing from some runs included). */
export function varyingSettings(settings: Map<string, SettingValue>[]): string[] {
  const keys = new Set(settings.flatMap((s) => [...s.keys()]));
  return [...keys]
    .filter((key) => new Set(settings.map((s) => (s.has(key) ? JSON.stringify(s.get(key)) : '∅'))).size > 1)
    .sort(byImportance);
}

/** A number as a person writes it (0.5, 1e-4, 300), anything else as its text. */
export function formatValue(value: SettingValue | undefined): string {
  if (value === undefined) return '—';
  if (typeof value !== 'number') return String(value);
  if (value !== 0 && (Math.abs(value) < 1e-3 || Math.abs(value) >= 1e6)) {
    return value
      .toExponential()
      .replace(/\.?0+e/, 'e')
      .replace('e+', 'e');
  }
  return String(Number(value.toPrecision(6)));
}

/**
 * A setting's short name: σ, λ, lr, ... or its last path segment; the whole path when another setting among
 * `among` would be shown by the same name (`data.train.seed` beside `trainer.seed`).
 */
export function settingName(key: string, among: string[] = []): string {
  const shortName = (of: string) => SHORT_NAMES[of] ?? of.split('.').at(-1) ?? of;
  const name = shortName(key);
  return among.some((other) => other !== key && shortName(other) === name) ? key : name;
}

/**
 * The settings a run is labelled by: its config's; for a sweep's run, its task instead of the `data.*` settings
 * the task gave it (a few-shot task's seeds and shots were labels of their own, and split repeats into colours).
 */
function labelSettings(run: RunRecord): Map<string, SettingValue> {
  const settings = flattenSettings(run.config);
  if (run.sweep?.task === undefined) return settings;
  for (const key of [...settings.keys()]) if (key.startsWith('data.')) settings.delete(key);
  settings.set(TASK, run.sweep.task);
  return settings;
}

/**
 * The fewest trailing parts of each folder's path that tell it apart from the others' (`run_0` of two sweeps:
 * `sweepA/run_0` and `sweepB/run_0`).
 */
function distinctNames(dirs: string[]): string[] {
  const parts = dirs.map((dir) => dir.split(/[\\/]/).filter(Boolean));
  return parts.map((own, i) => {
    for (let n = 1; n < own.length; n++) {
      const tail = own.slice(-n).join('/');
      if (parts.every((other, j) => j === i || other.slice(-n).join('/') !== tail)) return tail;
    }
    return own.join('/');
  });
}

/**
 * PACE is off in a run whose σ and λ are both 0, as the trainer has it: with σ alone the copies are still noisy
 * (the Noise ablation, λ 0), with λ alone they still differ by their drop-path masks.
 */
function paceOff(settings: Map<string, SettingValue>): boolean {
  return settings.get('trainer.pace.sigma') === 0 && settings.get('trainer.pace.lambda') === 0;
}

/** How the report names each run, and which runs are repeats of one another. */
export interface RunLabel {
  /** What sets the run apart: `baseline`, `σ 0.5, λ 1`, `lr 0.001, seed 2`; the folder name when nothing does. */
  label: string;
  /** The label without the repeat settings (seeds; empty when only those vary): one colour per group. */
  group: string;
  /** Index of the run's group, in order of first appearance. */
  groupIndex: number;
  /** The run's place among the runs of its group (0 for the first). */
  repeatIndex: number;
  /**
   * Its line's dash: the repeat's, shifted for each round of the colours (the eleventh group has the first's
   * colour, so its runs take the dashes after the first group's repeats).
   */
  dashIndex: number;
}

/**
 * Labels runs by what differs between them: the settings that vary, by short name and value. A run with PACE
 * off (σ and λ both 0; σ alone still trains on noisy copies) among runs with it on is the `baseline` (its other
 * PACE settings are then moot and left out).
 * A sweep's run that is unfinished or failed says so: `σ 0.5 (unfinished)`.
 */
export function labelRuns(runs: RunRecord[]): RunLabel[] {
  const settings = runs.map(labelSettings);
  const varying = varyingSettings(settings);
  const paceVaries = varying.some((key) => key.startsWith('trainer.pace.'));
  const someOn = settings.some((s) => !paceOff(s));
  const describe = (s: Map<string, SettingValue>, keys: string[]) => {
    const baseline = paceVaries && someOn && paceOff(s);
    const parts = keys
      .filter((key) => !(baseline && key.startsWith('trainer.pace.')))
      .map((key) => `${settingName(key, varying)} ${formatValue(s.get(key))}`);
    return [...(baseline ? ['baseline'] : []), ...parts].join(', ');
  };
  const labels = runs.map((run, i) => describe(settings[i], varying) || run.name);
  // Runs sharing a label are told apart by their paths, worked out once per label.
  const sharing = new Map<string, number[]>();
  labels.forEach((label, i) => {
    if (sharing.has(label)) sharing.get(label)!.push(i);
    else sharing.set(label, [i]);
  });
  const distinct = new Map<number, string>();
  for (const same of sharing.values()) {
    if (same.length < 2) continue;
    distinctNames(same.map((i) => runs[i].dir)).forEach((name, k) => distinct.set(same[k], name));
  }
  const unique = labels.map((label, i) => {
    const tail = distinct.get(i);
    // a run labelled by its folder's name (nothing differs) is labelled by the path's tail that tells it apart
    const named = tail === undefined ? label : label === runs[i].name ? tail : `${label} (${tail})`;
    // a sweep's run that has not finished: its numbers are as far as it got, not final
    const status = runs[i].sweep?.status;
    return status && status !== 'finished' ? `${named} (${status})` : named;
  });
  const groups: string[] = [];
  const seen = new Map<string, number>();
  const grouped = runs.map((_run, i) => {
    const group = describe(
      settings[i],
      varying.filter((key) => !REPEAT_KEYS.has(key)),
    );
    if (!groups.includes(group)) groups.push(group);
    const repeatIndex = seen.get(group) ?? 0;
    seen.set(group, repeatIndex + 1);
    return { label: unique[i], group, groupIndex: groups.indexOf(group), repeatIndex };
  });
  const repeats = Math.max(...seen.values());
  return grouped.map((label) => ({
    ...label,
    dashIndex: Math.floor(label.groupIndex / RUN_COLOURS) * repeats + label.repeatIndex,
  }));
}
