import { DOMAIN_SHIFT_SETS, domainShiftSet } from '../data/domain-shift';
import type { DomainShiftScoring } from '../eval/domain-shift-table';
import type { Setting } from './grid';
import type { PlannedRun, RunStage, SweepPlan } from './plan';
import { finalMetrics, type FinalMetrics } from './run-state';
import { runStatus, type RunStatus } from './run-status';
import { meanOf, meanStd, selectBest, type MeanStd } from './stats';
import type { TaskKind } from './tasks';
import { vtabGroupOf } from './vtab-groups';

/** A task as the results show it. */
export interface TaskInfo {
  name: string;
  kind: TaskKind;
  /** A VTAB task's group (Natural, Specialized, Structured). */
  group?: string;
  dataset?: string;
  shots?: number;
}

/** One run and its final numbers (read from its run folder's finished.json). */
export interface RunRow {
  name: string;
  dir: string;
  stage: RunStage;
  task?: TaskInfo;
  point: number;
  label: string;
  setting: Setting;
  seed: number;
  status: RunStatus;
  metrics: FinalMetrics;
  /** Why a finished run's numbers could not be read (its row then has none, and no summary counts it). */
  problem?: string;
}

/** The point a task's tuning runs chose. */
export interface Selection {
  task?: TaskInfo;
  /** undefined: no tuning run has finished with a validation accuracy. */
  point?: number;
  label?: string;
  valAcc?: number;
  /** The points tried, and how many of their runs finished. */
  candidates: number;
  finished: number;
}

/** A task's accuracy at one point over the seeds: test accuracy where the runs measured it, else validation. */
export interface Summary extends MeanStd {
  task?: TaskInfo;
  point: number;
  label: string;
  /** `target_mean`: a domain-adaptation task's mean top-1 over its shifted sets. */
  metric: 'test_acc' | 'val_acc' | 'target_mean';
  values: number[];
  seeds: number[];
  /** A domain-adaptation task's top-1 per evaluated set over the seeds. */
  sets?: Record<string, MeanStd>;
  /** How each of those sets was scored (its classes and resize); `mixed` where the seeds scored it differently. */
  scoring?: Record<string, DomainShiftScoring | 'mixed'>;
}

export interface SweepResults {
  protocol: 'select' | 'grid';
  /** The option paths the sweep varies (the CSV's setting columns). */
  paths: string[];
  seeds: number[];
  rows: RunRow[];
  selections: Selection[];
  summaries: Summary[];
}

export function taskInfo(run: Pick<PlannedRun, 'task'>): TaskInfo | undefined {
  const task = run.task;
  if (!task) return undefined;
  return {
    name: task.name,
    kind: task.kind,
    ...(task.vtabTask !== undefined && { group: vtabGroupOf(task.vtabTask) }),
    ...(task.dataset !== undefined && { dataset: task.dataset }),
    ...(task.shots !== undefined && { shots: task.shots }),
  };
}

/**
 * Reads the runs' folders: each run's status and final numbers. A finished run's numbers never change: `cache`
 * keeps them (by folder) between calls, so a large sweep does not re-read every run's files after each run. A
 * finished run whose numbers cannot be read gets a row saying why, rather than failing the whole table.
 */
export function readRows(plan: SweepPlan, runs: PlannedRun[], cache = new Map<string, FinalMetrics>()): RunRow[] {
  const finalOf = (dir: string): { metrics: FinalMetrics; problem?: string } => {
    const cached = cache.get(dir);
    if (cached) return { metrics: cached };
    try {
      const metrics = finalMetrics(dir);
      cache.set(dir, metrics);
      return { metrics };
    } catch (error) {
      return { metrics: { epochs: 0 }, problem: (error as Error).message };
    }
  };
  return runs.map((run) => {
    const status = runStatus(run.dir);
    return {
      name: run.name,
      dir: run.dir,
      stage: run.stage,
      task: taskInfo(run),
      point: run.point,
      label: plan.label(run.point),
      setting: run.setting,
      seed: run.seed,
      status,
      ...(status === 'finished' ? finalOf(run.dir) : { metrics: { epochs: 0 } }),
    };
  });
}

/**
 * Mean ± std per task and point over the finished evaluation (or grid) runs with readable numbers, in the order
 * runs were planned. The metric is the one most of a group's runs measured (test accuracy on a tie), and only the
 * runs that measured it count: one run without a test set does not turn its seeds to validation accuracy.
 */
export function summarize(rows: RunRow[]): Summary[] {
  const groups = new Map<string, RunRow[]>();
  for (const row of rows) {
    if (row.stage === 'tune' || row.status !== 'finished' || row.problem !== undefined) continue;
    const key = JSON.stringify([row.task?.name ?? null, row.point]);
    groups.set(key, [...(groups.get(key) ?? []), row]);
  }
  return [...groups.values()].map((group) => {
    if (group[0].task?.kind === 'domainShift') return domainShiftSummary(group);
    const count = (key: 'test_acc' | 'val_acc') => group.filter((row) => row.metrics[key] !== undefined).length;
    const metric = count('test_acc') >= count('val_acc') ? 'test_acc' : 'val_acc';
    const measured = group.filter((row) => row.metrics[metric] !== undefined);
    const values = measured.map((row) => row.metrics[metric] as number);
    const { task, point, label } = group[0];
    return { task, point, label, metric, values, seeds: measured.map((row) => row.seed), ...meanStd(values) };
  });
}

/**
 * A domain-adaptation task at one point: each set's top-1 over the seeds that evaluated it, and the mean over the
 * shifted sets of the seeds that evaluated every one of them.
 */
function domainShiftSummary(group: RunRow[]): Summary {
  const measured = group.filter((row) => row.metrics.domainShift !== undefined);
  const top1 = (row: RunRow, name: string) => row.metrics.domainShift?.[name];
  const names = DOMAIN_SHIFT_SETS.map((s) => s.name).filter((name) =>
    measured.some((row) => top1(row, name) !== undefined),
  );
  const sets = Object.fromEntries(
    names.map((name) => [
      name,
      meanStd(measured.flatMap((row) => (top1(row, name) === undefined ? [] : [top1(row, name) as number]))),
    ]),
  );
  const scoring: Record<string, DomainShiftScoring | 'mixed'> = Object.fromEntries(
    names.flatMap((name): [string, DomainShiftScoring | 'mixed'][] => {
      const scorings = measured.flatMap((row) => row.metrics.domainShiftScoring?.[name] ?? []);
      if (scorings.length === 0) return [];
      // Seeds averaged into one cell should have been scored alike (a config changed between reruns may not).
      const [first] = scorings;
      const alike = scorings.every((one) => one.classes === first.classes && one.resize === first.resize);
      return [[name, alike ? first : 'mixed']];
    }),
  );
  const targets = names.filter((name) => !domainShiftSet(name).source);
  // Without a target set (only the source evaluated) there is no target mean: no seed has one.
  const complete =
    targets.length === 0 ? [] : measured.filter((row) => targets.every((name) => top1(row, name) !== undefined));
  const values = complete.map((row) => meanOf(targets.map((name) => top1(row, name))) ?? NaN);
  const { task, point, label } = group[0];
  return {
    task,
    point,
    label,
    metric: 'target_mean',
    values,
    seeds: complete.map((row) => row.seed),
    sets,
    scoring,
    ...meanStd(values),
  };
}

/** The paper's selection for one task: the point whose tuning run reached the highest validation accuracy. */
export function selectionOf(task: TaskInfo | undefined, tuneRows: RunRow[]): Selection {
  const finished = tuneRows.filter((row) => row.status === 'finished');
  const scores = tuneRows.map((row) => (row.status === 'finished' ? row.metrics.val_acc : undefined));
  const best = selectBest(scores);
  const selection: Selection = { task, candidates: tuneRows.length, finished: finished.length };
  if (best === undefined) return selection;
  const row = tuneRows[best];
  return { ...selection, point: row.point, label: row.label, valAcc: row.metrics.val_acc };
}
