import { finalMeasured } from './final-numbers';
import { gridGroups, type GridGroup } from './grid-groups';
import { flattenSettings, REPEAT_KEYS, settingName, varyingSettings, type SettingValue } from './labels';
import type { RunRecord } from './read-runs';

/**
 * The accuracy a grid shows, as each run ended (see {@link finalMeasured}): test accuracy for a sweep's
 * evaluation (or grid) runs, as its results.md scores them, else validation accuracy; the other where a group's
 * runs did not all measure the first, training accuracy where they measured neither.
 */
export type GridMetric = 'val_acc' | 'test_acc' | 'acc';

/** One axis of a grid: a setting and its values, in order. */
export interface GridAxis {
  key: string;
  name: string;
  values: SettingValue[];
}

/** The runs made at one point of the grid and their mean accuracy (no runs, or one not finite: no mean). */
export interface GridCell {
  mean?: number;
  /** One of the runs ended with its accuracy not finite. */
  notFinite?: true;
  /** Indices of the runs (in the report's order). */
  runs: number[];
}

/**
 * Accuracy against two settings: `cells[y][x]` holds the runs made with `y.values[y]` and `x.values[x]`,
 * averaged over every other setting that varies (`averagedOver`: seeds, or a third swept setting).
 */
export interface SettingGrid {
  /** Which runs it shows, when not all of them: `tuning runs of dtd` (see {@link gridGroups}). */
  group?: string;
  metric: GridMetric;
  x: GridAxis;
  y: GridAxis;
  cells: GridCell[][];
  averagedOver: string[];
}

/** The most distinct values an axis may have, and the most grids a report shows. */
const MAX_VALUES = 12;
const MAX_GRIDS = 6;

function compareValues(a: SettingValue, b: SettingValue): number {
  if (typeof a === 'number' && typeof b === 'number') return a - b;
  return String(a).localeCompare(String(b));
}

function gridMetric(runs: RunRecord[], scoredOnTest: boolean): GridMetric | undefined {
  const order = scoredOnTest ? (['test_acc', 'val_acc', 'acc'] as const) : (['val_acc', 'test_acc', 'acc'] as const);
  return order.find((key) => runs.every((run) => finalMeasured(run.epochs, key)));
}

/**
 * The accuracy-against-setting grids of a set of runs (a sweep): for each group of runs measured alike (a sweep's
 * tuning runs of one task, its evaluation runs of one task, see {@link gridGroups}), one per pair of swept
 * settings (those that vary, are set in every run of the group, and take 2 to 12 values; seeds are repeats, not
 * axes), each grid showing the accuracy every run of its group measured. A pair is shown only when its runs cover
 * more cells than a diagonal (settings that always change together, like σ and λ of a baseline-vs-PACE
 * comparison, make no grid).
 */
export function settingGrids(runs: RunRecord[]): SettingGrid[] {
  return gridGroups(runs)
    .flatMap((group) => groupGrids(runs, group))
    .slice(0, MAX_GRIDS);
}

function groupGrids(all: RunRecord[], group: GridGroup): SettingGrid[] {
  const runs = group.runs.map((index) => all[index]);
  const metric = gridMetric(runs, group.stage === 'evaluate' || group.stage === 'grid');
  if (!metric || runs.length < 3) return [];
  const settings = runs.map((run) => flattenSettings(run.config));
  const varying = varyingSettings(settings).filter((key) => !(group.sweep && key.startsWith('data.')));
  const axes: GridAxis[] = varying
    .filter((key) => !REPEAT_KEYS.has(key) && settings.every((s) => s.has(key)))
    .map((key) => ({
      key,
      name: settingName(key, varying),
      values: [...new Map(settings.map((s) => [JSON.stringify(s.get(key)), s.get(key)!])).values()].sort(compareValues),
    }))
    .filter((axis) => axis.values.length <= MAX_VALUES);
  const accuracy = runs.map((run) => finalMeasured(run.epochs, metric)!.value);
  const grids: SettingGrid[] = [];
  for (let a = 0; a < axes.length; a++) {
    for (let b = a + 1; b < axes.length; b++) {
      const [x, y] = [axes[a], axes[b]];
      const cells: GridCell[][] = y.values.map(() => x.values.map(() => ({ runs: [] as number[] })));
      settings.forEach((s, run) => {
        const xi = x.values.findIndex((v) => v === s.get(x.key));
        const yi = y.values.findIndex((v) => v === s.get(y.key));
        cells[yi][xi].runs.push(run);
      });
      let filled = 0;
      for (const cell of cells.flat()) {
        if (cell.runs.length === 0) continue;
        filled++;
        const mean = cell.runs.reduce((total, run) => total + accuracy[run], 0) / cell.runs.length;
        if (Number.isFinite(mean)) cell.mean = mean;
        else cell.notFinite = true;
        cell.runs = cell.runs.map((run) => group.runs[run]);
      }
      if (filled <= Math.max(x.values.length, y.values.length)) continue;
      const averagedOver = varying
        .filter((key) => key !== x.key && key !== y.key)
        .map((key) => settingName(key, varying));
      grids.push({ ...(group.title !== undefined && { group: group.title }), metric, x, y, cells, averagedOver });
    }
  }
  return grids;
}
