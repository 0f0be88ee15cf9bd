import fs from 'node:fs';
import path from 'node:path';

import { parseSweepConfig } from '../sweep/config';
import { SWEEP_CONFIG_FILE } from '../sweep/folder';
import { SweepPlan, type RunStage } from '../sweep/plan';
import { runStatus, type RunStatus } from '../sweep/run-status';

/** Where a run folder of a `pace sweep` folder stands in its sweep. */
export interface SweepMembership {
  /** Only a finished run's numbers are final; an unfinished or failed run's are as far as it got. */
  status: RunStatus;
  /** The run's stage and task as the sweep's plan names them (no stage: the folder's sweep.json reads as no plan). */
  stage?: RunStage;
  task?: string;
  /** Where the plan makes the run among the sweep's runs (tuning runs first, then each point's evaluation runs). */
  order?: number;
}

/** The plan of the sweep a folder stores, or undefined when its sweep.json does not read as one. */
function storedPlan(dir: string): SweepPlan | undefined {
  try {
    const identity: unknown = JSON.parse(fs.readFileSync(path.join(dir, SWEEP_CONFIG_FILE), 'utf8'));
    return new SweepPlan(parseSweepConfig(identity, dir), dir);
  } catch {
    return undefined; // (another version's config, a damaged file): its runs are still shown, with their status
  }
}

/**
 * The membership of each run folder that sits in a `pace sweep` folder (one holding sweep.json), by folder; run
 * folders elsewhere have none.
 */
export function sweepMemberships(runDirs: string[]): Map<string, SweepMembership> {
  const plans = new Map<string, { plan?: SweepPlan; order?: Map<string, number> } | undefined>();
  const memberships = new Map<string, SweepMembership>();
  for (const dir of runDirs) {
    const parent = path.dirname(dir);
    if (!plans.has(parent)) {
      const isSweep = fs.existsSync(path.join(parent, SWEEP_CONFIG_FILE));
      const plan = isSweep ? storedPlan(parent) : undefined;
      const order = plan && new Map([...plan.byName.keys()].map((name, index) => [name, index]));
      plans.set(parent, isSweep ? { plan, order } : undefined);
    }
    const sweep = plans.get(parent);
    if (!sweep) continue;
    const planned = sweep.plan?.byName.get(path.basename(dir));
    // A folder the plan does not name is no run of it (a user's own sweep.json beside a plain run, say).
    if (sweep.plan && !planned) continue;
    memberships.set(dir, {
      status: runStatus(dir),
      ...(planned && { stage: planned.stage, task: planned.task, order: sweep.order!.get(path.basename(dir)) }),
    });
  }
  return memberships;
}
