import { extent } from './extent';
import { finalNumbers, type FinalNumbers } from './final-numbers';
import { settingGrids, type SettingGrid } from './grids';
import {
  flattenSettings,
  formatValue,
  labelRuns,
  settingName,
  varyingSettings,
  type RunLabel,
  type SettingValue,
} from './labels';
import type { MetricKey, RunRecord, UnreadableRun } from './read-runs';

/** What each metric is called in the report, and whether it is a fraction shown as a percentage. */
export const METRICS: Partial<Record<MetricKey, { title: string; percent?: boolean }>> = {
  loss: { title: 'Loss (classification + λ · consistency)' },
  clsLoss: { title: 'Classification loss' },
  paceLoss: { title: 'Consistency loss (PACE)' },
  acc: { title: 'Training accuracy', percent: true },
  val_acc: { title: 'Validation accuracy', percent: true },
  test_acc: { title: 'Test accuracy', percent: true },
  lr: { title: 'Learning rate' },
  imagesPerSecond: { title: 'Images per second' },
  gradNorm: { title: 'Gradient norm (diagnostics)' },
  fpDistance: { title: 'FP-distance to the frozen backbone (diagnostics)' },
};

/** The overlaid charts, in order (a chart is left out when no run measured its metric). */
const OVERVIEW: MetricKey[] = [
  'loss',
  'clsLoss',
  'paceLoss',
  'acc',
  'val_acc',
  'test_acc',
  'lr',
  'imagesPerSecond',
  'gradNorm',
  'fpDistance',
];

/** Each run's own charts: several metrics of one kind on one chart, or a diagnostic alone. */
const PER_RUN: { id: string; title: string; keys: MetricKey[]; percent?: boolean }[] = [
  { id: 'losses', title: 'Losses', keys: ['loss', 'clsLoss', 'paceLoss'] },
  { id: 'accuracy', title: 'Accuracy', keys: ['acc', 'val_acc', 'test_acc'], percent: true },
  { id: 'gradNorm', title: 'Gradient norm', keys: ['gradNorm'] },
  { id: 'fpDistance', title: 'FP-distance', keys: ['fpDistance'] },
];

/** The metrics of a run's own charts, each its own colour (eight: d3's Dark 2 has as many). */
const PER_RUN_KEYS = PER_RUN.flatMap((chart) => chart.keys);

/** Short names of the metrics in legends. */
const SERIES_NAMES: Partial<Record<MetricKey, string>> = {
  loss: 'total',
  clsLoss: 'classification',
  paceLoss: 'consistency',
  acc: 'train',
  val_acc: 'validation',
  test_acc: 'test',
  gradNorm: 'gradient norm',
  fpDistance: 'FP-distance',
};

/** One line of a chart: (epoch, value) points of one metric of one run. */
export interface ChartSeries {
  name: string;
  run: number;
  key: MetricKey;
  /** Palette index (the run's group on overlaid charts; on a run's own charts, one per metric). */
  colour: number;
  /** Dash pattern index (a run's place among the repeats of its group; 0 is solid). */
  dash: number;
  points: [epoch: number, value: number][];
  /** Evaluation metrics (measured every few epochs) are drawn with a marker at each point. */
  markers: boolean;
}

export interface ChartModel {
  /** `overview-<metric>` or `run<i>-<chart>`, unique in the report. */
  id: string;
  title: string;
  percent: boolean;
  /** The x axis: the first and last epoch of the runs shown (also where a metric was not measured). */
  epochs: [number, number];
  /** Overlaid charts colour runs; a run's own charts colour its metrics. */
  palette: 'runs' | 'metrics';
  series: ChartSeries[];
}

/** Everything a report shows, before any drawing. */
export interface ReportModel {
  title: string;
  runs: { record: RunRecord; label: RunLabel; final: FinalNumbers; settings: Map<string, SettingValue> }[];
  /** Settings that differ between runs, then those they share. */
  varying: { key: string; name: string }[];
  common: { key: string; value: string }[];
  overview: ChartModel[];
  perRun: ChartModel[][];
  grids: SettingGrid[];
  /** Run folders of a sweep folder that could not be read, left out. */
  unreadable: UnreadableRun[];
}

function series(run: RunRecord, runIndex: number, key: MetricKey, colour: number, dash: number, name: string) {
  const points = run.epochs.flatMap((row): [number, number][] =>
    row[key] === undefined ? [] : [[row.epoch, row[key] as number]],
  );
  return { name, run: runIndex, key, colour, dash, points, markers: /^(val|test)_/.test(key) || points.length < 2 };
}

export function buildReport(
  runs: RunRecord[],
  title = 'pace-peft run report',
  unreadable: UnreadableRun[] = [],
): ReportModel {
  const labels = labelRuns(runs);
  const settings = runs.map((run) => flattenSettings(run.config));
  const varyingKeys = varyingSettings(settings);
  const commonKeys = [...new Set(settings.flatMap((s) => [...s.keys()]))].filter((k) => !varyingKeys.includes(k));
  const epochRange = (of: RunRecord[]): [number, number] =>
    extent(of.flatMap((run) => run.epochs.map((row) => row.epoch)));
  const overview = OVERVIEW.map((key) => ({
    id: `overview-${key}`,
    title: METRICS[key]!.title,
    percent: METRICS[key]!.percent === true,
    epochs: epochRange(runs),
    palette: 'runs' as const,
    series: runs.map((run, i) => series(run, i, key, labels[i].groupIndex, labels[i].dashIndex, labels[i].label)),
  })).filter((chart) => chart.series.some((s) => s.points.length > 0));
  const perRun = runs.map((run, r) =>
    PER_RUN.map((chart) => ({
      id: `run${r}-${chart.id}`,
      title: chart.title,
      percent: chart.percent === true,
      epochs: epochRange([run]),
      palette: 'metrics' as const,
      series: chart.keys
        .map((key) => series(run, r, key, PER_RUN_KEYS.indexOf(key), 0, SERIES_NAMES[key] ?? key))
        .filter((s) => s.points.length > 0),
    })).filter((chart) => chart.series.length > 0),
  );
  return {
    title,
    runs: runs.map((record, i) => ({
      record,
      label: labels[i],
      final: finalNumbers(record, OVERVIEW),
      settings: settings[i],
    })),
    varying: varyingKeys.map((key) => ({ key, name: settingName(key, varyingKeys) })),
    common: commonKeys.sort().map((key) => ({ key, value: formatValue(settings[0].get(key)) })),
    overview,
    perRun,
    grids: settingGrids(runs),
    unreadable,
  };
}
