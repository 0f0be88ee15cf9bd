import path from 'node:path';

import type { RunRecord } from './read-runs';

/** Runs whose accuracies may share a grid: one stage of one task of a sweep, or runs made alike. */
export interface GridGroup {
  /** What the runs are, when they are not all the runs: `tuning runs of dtd`. */
  title?: string;
  /** Indices of the runs (in the report's order). */
  runs: number[];
  /** The sweep stage the runs were made in, where the sweep folder or their names say. */
  stage?: 'tune' | 'evaluate' | 'grid';
  /** Runs of a `pace sweep` folder: their data come from their task, so no data setting is an axis. */
  sweep: boolean;
}

const STAGE_TITLES = { tune: 'tuning runs', evaluate: 'evaluation runs', grid: 'runs' } as const;

/** A sweep's stage from a run's name, as `pace sweep` names runs (`tune_…`, `eval_…`), for runs read without it. */
function stageFromName(name: string): 'tune' | 'evaluate' | undefined {
  if (name.startsWith('tune_')) return 'tune';
  if (name.startsWith('eval_')) return 'evaluate';
  return undefined;
}

/**
 * Splits runs into the groups a grid may mix. A sweep's tuning runs (validation accuracy, on the tuning split)
 * and evaluation runs (test accuracy, on the evaluation split) are measured apart, and so is each task: a `pace
 * sweep` folder's runs are grouped by their stage and task there, other runs by the stage their name begins with.
 * A sweep's runs that have not finished are left out (their numbers are not final); those whose stage the sweep
 * folder does not say (its stored plan unreadable) are grouped by their names as other runs are.
 */
export function gridGroups(runs: RunRecord[]): GridGroup[] {
  const groups = new Map<string, GridGroup>();
  runs.forEach((run, index) => {
    let key: string;
    let title: string | undefined;
    let stage: GridGroup['stage'];
    if (run.sweep && run.sweep.status !== 'finished') return;
    if (run.sweep?.stage !== undefined) {
      const { task } = run.sweep;
      stage = run.sweep.stage;
      key = JSON.stringify([path.dirname(run.dir), stage, task ?? null]);
      title =
        task === undefined ? (stage === 'grid' ? undefined : STAGE_TITLES[stage]) : `${STAGE_TITLES[stage]} of ${task}`;
    } else {
      stage = stageFromName(run.name);
      key = JSON.stringify([null, stage ?? null]);
      title = stage && STAGE_TITLES[stage];
    }
    const group = groups.get(key) ?? { title, runs: [], sweep: run.sweep !== undefined, ...(stage && { stage }) };
    group.runs.push(index);
    groups.set(key, group);
  });
  return [...groups.values()];
}
