import fs from 'node:fs';
import path from 'node:path';

/**
 * What a run folder of a sweep says about its run. A run is finished once the sweep has seen its `pace fit`
 * complete every epoch: it then writes `finished.json` (with the run's final numbers) beside the fit's files, and
 * never starts the run again. `failed.json` says why a run failed (a later sweep tries it again).
 */
export const FINISHED_FILE = 'finished.json';
export const FAILED_FILE = 'failed.json';

export type RunStatus = 'finished' | 'failed' | 'unfinished';

export function runStatus(dir: string): RunStatus {
  if (fs.existsSync(path.join(dir, FINISHED_FILE))) return 'finished';
  return fs.existsSync(path.join(dir, FAILED_FILE)) ? 'failed' : 'unfinished';
}
