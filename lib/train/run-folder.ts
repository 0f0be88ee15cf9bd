import fs from 'node:fs';
import path from 'node:path';

import { withContext } from '../error-context';
import { makeFolder, removeKilledWritersFiles, TEMPORARY_NAME, writeFailure, writeFileAtomic } from '../files';
import { takeLock } from '../folder-lock';
import { PaceFileError, PaceNotFoundError, PaceOptionError } from '../errors';
import type { EpochLogs } from './callbacks';
import { MARKED_BEST_FILE } from './marked-best';

const columns: (keyof EpochLogs)[] = [
  'epoch',
  'loss',
  'clsLoss',
  'paceLoss',
  'acc',
  'lr',
  'val_acc',
  'val_loss',
  'val_top5',
  'test_acc',
  'imagesPerSecond',
  'gradNorm',
  'fpDistance',
];

/** The lock a fit holds its run folder with (see takeLock): `{pid, hostname, started}`. */
export const RUN_LOCK_FILE = 'fit.lock';

/**
 * Holds the run folder `dir` as a fit does (`fit.lock`), for writing into it; returns the release. Refused with
 * PaceBusyError naming the holder while another fit, here or in another process, holds it. `onLost` is called
 * should another host take the lock over while this process was not running (see takeLock).
 */
export function holdRunFolder(dir: string, onLost?: (now: string) => void): () => void {
  return takeLock(dir, path.join(dir, RUN_LOCK_FILE), { folder: 'run folder', user: 'fit' }, undefined, onLost);
}

/** A run folder's config.json (a JSON object), or undefined when it has none; anything else is a PaceFileError. */
export function readRunConfig(dir: string): Record<string, unknown> | undefined {
  const file = path.join(dir, 'config.json');
  if (!fs.existsSync(file)) return undefined;
  let config: unknown;
  try {
    config = JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (error) {
    throw withContext(error, `${file} is not readable JSON (${(error as Error).message})`);
  }
  if (typeof config !== 'object' || config === null || Array.isArray(config)) {
    throw new PaceFileError(`${file} does not hold a JSON object`);
  }
  return config as Record<string, unknown>;
}

/** The adapters `pace fit` saves into its run folder once the fit has ended. */
export const RUN_ADAPTERS_FILE = 'adapters.safetensors';
/** The file of a run folder a completed `pace fit` writes its domain-adaptation report to. */
export const DOMAIN_SHIFT_FILE = 'domain-shift.json';

/**
 * What `pace sweep` puts in each run's folder: before the run's fit its config and the fit's log; after it
 * `finished.json` (the run's final numbers) or `failed.json` (why it failed: a later sweep tries it again).
 */
export const SWEEP_RUN_CONFIG_FILE = 'run.json';
export const SWEEP_RUN_LOG_FILE = 'fit.log';
export const SWEEP_FINISHED_FILE = 'finished.json';
export const SWEEP_FAILED_FILE = 'failed.json';

const RUN_FILES = [
  'last.safetensors',
  'previous.safetensors',
  'best.safetensors',
  MARKED_BEST_FILE,
  'metrics.jsonl',
  'summary.csv',
  RUN_ADAPTERS_FILE,
  DOMAIN_SHIFT_FILE,
];

/** The files a run writes (config.json aside) that `dir` holds: a new run must not mix with them. */
export function runFilesIn(dir: string): string[] {
  return RUN_FILES.filter((name) => fs.existsSync(path.join(dir, name)));
}

/** What `dir` holds that neither a run nor its sweep writes: a folder holding any of it is not a run folder. */
export function foreignEntriesIn(dir: string): string[] {
  if (!fs.existsSync(dir)) return [];
  const sweepFiles = [SWEEP_RUN_CONFIG_FILE, SWEEP_RUN_LOG_FILE, SWEEP_FINISHED_FILE, SWEEP_FAILED_FILE];
  const known = new Set(['config.json', ...RUN_FILES, ...sweepFiles]);
  return fs
    .readdirSync(dir)
    .filter((name) => !known.has(name) && !name.startsWith(RUN_LOCK_FILE) && !TEMPORARY_NAME.test(name));
}

/**
 * A run folder like timm's: `config.json`, `metrics.jsonl` (one line per epoch), `summary.csv`, and the
 * `last.safetensors` / `previous.safetensors` / `best.safetensors` training checkpoints (written by the trainer).
 */
export class RunFolder {
  /**
   * Opens (and for a new run creates) the folder. `mustExist`: resuming from a folder that is not there is an
   * error, not a new run. `option`: the fit option that named the folder, for errors.
   */
  constructor(
    readonly dir: string,
    {
      mustExist = false,
      readOnly = false,
      option = 'runDir',
    }: { mustExist?: boolean; readOnly?: boolean; option?: 'runDir' | 'resume' } = {},
  ) {
    if (mustExist && !fs.existsSync(dir)) throw new PaceNotFoundError(`resume: the run folder ${dir} does not exist`);
    // A reader (a data-parallel rank but the first) leaves the folder alone: a writer's temporary file may belong
    // to a process on another host, which this one cannot tell alive.
    if (readOnly) return;
    try {
      makeFolder(dir);
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (code !== 'EEXIST' && code !== 'ENOTDIR') throw writeFailure(error, dir);
      const what = code === 'EEXIST' ? 'is a file' : 'has a file as one of its parent folders';
      throw new PaceOptionError(`options.${option}: ${dir} ${what}, not a run folder`, { cause: error });
    }
  }

  /**
   * Removes the temporary files that killed writers left half-written. Only for the folder's lock holder: a
   * writer's file may belong to a live process of another host, which this one cannot tell alive.
   */
  removeKilledWritersFiles(): void {
    removeKilledWritersFiles(this.dir);
  }

  /** config.json as written by the run, or undefined when the folder has none. */
  readConfig(): Record<string, unknown> | undefined {
    return readRunConfig(this.dir);
  }

  get lastCheckpoint(): string {
    return path.join(this.dir, 'last.safetensors');
  }

  get bestCheckpoint(): string {
    return path.join(this.dir, 'best.safetensors');
  }

  /** The last checkpoint before the current one (kept when a new one is written). */
  get previousCheckpoint(): string {
    return path.join(this.dir, 'previous.safetensors');
  }

  writeConfig(config: unknown): void {
    writeFileAtomic(path.join(this.dir, 'config.json'), `${JSON.stringify(config, null, 2)}\n`);
  }

  /** How many epochs metrics.jsonl records (lines; 0 without it). */
  recordedEpochs(): number {
    try {
      return fs.readFileSync(path.join(this.dir, 'metrics.jsonl'), 'utf8').split('\n').filter(Boolean).length;
    } catch {
      return 0;
    }
  }

  /** Rewrites metrics.jsonl and summary.csv from the whole history (so a resumed run never duplicates lines). */
  writeHistory(history: EpochLogs[]): void {
    writeFileAtomic(path.join(this.dir, 'metrics.jsonl'), history.map((logs) => `${JSON.stringify(logs)}\n`).join(''));
    const rows = history.map((logs) =>
      columns.map((key) => (logs[key] === undefined ? '' : String(logs[key]))).join(','),
    );
    writeFileAtomic(path.join(this.dir, 'summary.csv'), `${[columns.join(','), ...rows].join('\n')}\n`);
  }
}
