import fs from 'node:fs';
import path from 'node:path';

import { SWEEP_FAILED_FILE, SWEEP_FINISHED_FILE } from '../train/run-folder';

/**
 * What a run folder of a sweep says about its run. A run is finished once the sweep has seen its `pace fit`
 * complete every epoch: it then writes `finished.json` (with the run's final numbers) beside the fit's files, and
 * never starts the run again. `failed.json` says why a run failed (a later sweep tries it again).
 */
export type RunStatus = 'finished' | 'failed' | 'unfinished';

export function runStatus(dir: string): RunStatus {
  if (fs.existsSync(path.join(dir, SWEEP_FINISHED_FILE))) return 'finished';
  return fs.existsSync(path.join(dir, SWEEP_FAILED_FILE)) ? 'failed' : 'unfinished';
}
