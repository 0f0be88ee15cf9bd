import fs from 'node:fs';
import path from 'node:path';

import { withContext } from '../error-context';
import { PaceFileError, PaceNotFoundError } from '../errors';
import { METRIC_KEYS, type MetricKey } from '../train/callbacks';
import { readRunConfig } from '../train/run-folder';
import { sweepMemberships, type SweepMembership } from './sweep-membership';

export { METRIC_KEYS, type MetricKey };

/**
 * One epoch of a run: a metric is absent when it was not measured that epoch or was not finite (`null` in
 * metrics.jsonl, as JSON writes NaN; `NaN` in summary.csv); `notFinite` names the latter.
 */
export type EpochRow = { epoch: number; notFinite?: MetricKey[] } & Partial<Record<MetricKey, number>>;

/** A run folder as `Trainer.fit({ runDir })` writes it. */
export interface RunRecord {
  /** The folder, resolved. */
  dir: string;
  /** The folder's own name. */
  name: string;
  /** `config.json` (the model, the trainer's options in force and the fit options); `{}` when absent. */
  config: Record<string, unknown>;
  /** One row per completed epoch, in order. */
  epochs: EpochRow[];
  /** The file the epochs were read from: `metrics.jsonl`, or `summary.csv` when that is all there is. */
  source: 'metrics.jsonl' | 'summary.csv';
  /** For a run folder of a `pace sweep` folder: its status, stage and task there. */
  sweep?: SweepMembership;
}

const isRunFolder = (dir: string) =>
  fs.existsSync(path.join(dir, 'metrics.jsonl')) || fs.existsSync(path.join(dir, 'summary.csv'));

/** A run folder that could not be read, and why. */
export interface UnreadableRun {
  dir: string;
  reason: string;
}

/** What `dirs` name: the run folders, each once, whether each was found inside a sweep folder, and in which. */
interface FoundRuns {
  runs: { dir: string; inSweep: boolean; given: number }[];
  /** Entries of sweep folders that may be run folders but cannot be read as one (a name that is not UTF-8). */
  unreadable: UnreadableRun[];
}

/** Whether a sweep folder's entry is a folder, following a symbolic link (one to nothing or to itself is not). */
function isFolder(entry: string): boolean {
  try {
    return fs.statSync(entry).isDirectory();
  } catch {
    return false;
  }
}

function findRunFolders(dirs: string[]): FoundRuns {
  const found: FoundRuns = { runs: [], unreadable: [] };
  const seen = new Set<string>();
  const add = (dir: string, inSweep: boolean, given: number) => {
    const real = fs.realpathSync(dir); // a folder named twice (by a link, or as a sweep's run too) counts once
    if (seen.has(real)) return;
    seen.add(real);
    found.runs.push({ dir, inSweep, given });
  };
  for (const [index, given] of dirs.entries()) {
    const dir = path.resolve(given);
    if (!fs.existsSync(dir)) throw new PaceNotFoundError(`the run folder ${given} does not exist`);
    if (!fs.statSync(dir).isDirectory()) throw new PaceFileError(`${given} is a file, not a run folder`);
    if (isRunFolder(dir)) {
      add(dir, false, index);
      continue;
    }
    let runs = 0;
    const unreadableBefore = found.unreadable.length;
    const names = fs.readdirSync(dir, { encoding: 'buffer' }).sort(Buffer.compare); // (runs are ordered once read)
    for (const raw of names) {
      const name = raw.toString('utf8');
      const entry = path.join(dir, name);
      if (!Buffer.from(name, 'utf8').equals(raw)) {
        found.unreadable.push({ dir: entry, reason: 'its name is not UTF-8, which the report cannot name: rename it' });
        continue;
      }
      if (!isFolder(entry) || !isRunFolder(entry)) continue;
      add(entry, true, index);
      runs++;
    }
    if (runs === 0 && found.unreadable.length === unreadableBefore) {
      throw new PaceNotFoundError(
        `${given} holds no metrics.jsonl or summary.csv, nor run folders that do (no epoch has finished there yet?)`,
      );
    }
  }
  return found;
}

/**
 * Folder names in the order a person counts them: numbers by their value (`seed=2` before `seed=10`, `lr=0.005`
 * before `lr=0.1`), the rest character by character. Equal values written apart (`07`, `7`) fall back to the
 * characters: a total order.
 */
function compareNames(a: string, b: string): number {
  const chunks = (name: string) => name.match(NUMBER_OR_TEXT) ?? [];
  const [x, y] = [chunks(a), chunks(b)];
  for (let i = 0; i < Math.min(x.length, y.length); i++) {
    const order = /^\d/.test(x[i]) && /^\d/.test(y[i]) ? compareNumbers(x[i], y[i]) : x[i] < y[i] ? -1 : +(x[i] > y[i]);
    if (order !== 0) return order;
  }
  return x.length - y.length || (a < b ? -1 : a > b ? 1 : 0);
}

/** Runs of digits, with a decimal fraction and exponent as sweeps spell values (`lr=0.005`, `1e-4`), or other text. */
const NUMBER_OR_TEXT = /\d+(?:\.\d+)?(?:[eE][-+]?\d+)?|\D+/g;

/** Two numbers as written: by value; whole numbers by their digits, which stay exact past 2^53. */
function compareNumbers(x: string, y: string): number {
  if (/^\d+$/.test(x) && /^\d+$/.test(y)) {
    const [u, v] = [x.replace(/^0+(?=\d)/, ''), y.replace(/^0+(?=\d)/, '')];
    return u.length - v.length || (u < v ? -1 : +(u > v));
  }
  const [u, v] = [Number(x), Number(y)];
  return u < v ? -1 : +(u > v);
}

/** The first of the run folders that cannot be read, as an error. */
function refuseUnreadable(unreadable: UnreadableRun[]): void {
  if (unreadable.length > 0) throw new PaceFileError(`${unreadable[0].dir}: ${unreadable[0].reason}`);
}

/** A metric's value as read: numbers stay, `null` (JSON's NaN and Infinity) and non-finite values are dropped. */
function metricValue(value: unknown, where: string, key: string): number | undefined {
  if (value === null || value === undefined) return undefined;
  if (typeof value !== 'number') throw new PaceFileError(`${where}: ${key} is ${JSON.stringify(value)}, not a number`);
  return Number.isFinite(value) ? value : undefined;
}

function epochRow(record: Record<string, unknown>, where: string, previous: number | undefined): EpochRow {
  const epoch = record.epoch;
  if (typeof epoch !== 'number' || !Number.isInteger(epoch) || epoch < 0) {
    throw new PaceFileError(`${where}: epoch is ${JSON.stringify(epoch)}, not an epoch number`);
  }
  if (previous !== undefined && epoch <= previous) {
    throw new PaceFileError(`${where}: epoch ${epoch} follows epoch ${previous} (epochs must increase)`);
  }
  const row: EpochRow = { epoch };
  for (const key of METRIC_KEYS) {
    const value = metricValue(record[key], where, key);
    if (value !== undefined) row[key] = value;
    else if (record[key] !== undefined) (row.notFinite ??= []).push(key);
  }
  return row;
}

function readLines(file: string): string[] {
  try {
    // a byte-order mark (an editor's save) is no part of the first line
    return fs
      .readFileSync(file, 'utf8')
      .replace(/^\uFEFF/, '')
      .split('\n');
  } catch (error) {
    throw withContext(error, `cannot read ${file}: ${(error as Error).message}`);
  }
}

/** `metrics.jsonl`: one JSON object per epoch. Errors name the file and line. */
export function readMetricsJsonl(file: string): EpochRow[] {
  const rows: EpochRow[] = [];
  readLines(file).forEach((text, index) => {
    if (text.trim() === '') return;
    const where = `${file}:${index + 1}`;
    let record: unknown;
    try {
      record = JSON.parse(text);
    } catch (error) {
      throw new PaceFileError(`${where}: not a JSON line (${(error as Error).message})`, { cause: error });
    }
    if (typeof record !== 'object' || record === null || Array.isArray(record)) {
      throw new PaceFileError(`${where}: not a JSON object`);
    }
    rows.push(epochRow(record as Record<string, unknown>, where, rows.at(-1)?.epoch));
  });
  return rows;
}

/** `summary.csv`: a header of EpochLogs names, then one row per epoch (empty cells: not measured). */
export function readSummaryCsv(file: string): EpochRow[] {
  const lines = readLines(file);
  const header = lines[0].trim().split(',');
  if (!header.includes('epoch')) throw new PaceFileError(`${file}:1: the header has no 'epoch' column`);
  const rows: EpochRow[] = [];
  lines.slice(1).forEach((text, index) => {
    if (text.trim() === '') return;
    const where = `${file}:${index + 2}`;
    const cells = text.trim().split(',');
    if (cells.length !== header.length) {
      throw new PaceFileError(`${where}: ${cells.length} cells, the header has ${header.length}`);
    }
    const record: Record<string, unknown> = {};
    header.forEach((name, i) => {
      const cell = cells[i];
      if (cell === '') return;
      const value = Number(cell);
      if (Number.isNaN(value) && cell !== 'NaN')
        throw new PaceFileError(`${where}: ${name} is '${cell}', not a number`);
      record[name] = value;
    });
    rows.push(epochRow(record, where, rows.at(-1)?.epoch));
  });
  return rows;
}

/** Reads one run folder: its config and its epochs (from `metrics.jsonl`, else `summary.csv`). */
export function readRun(dir: string): RunRecord {
  const resolved = path.resolve(dir);
  if (!fs.existsSync(resolved)) throw new PaceNotFoundError(`the run folder ${dir} does not exist`);
  const jsonl = path.join(resolved, 'metrics.jsonl');
  const csv = path.join(resolved, 'summary.csv');
  const source = fs.existsSync(jsonl) ? 'metrics.jsonl' : fs.existsSync(csv) ? 'summary.csv' : undefined;
  if (!source) throw new PaceNotFoundError(`${dir} has no metrics.jsonl or summary.csv`);
  const epochs = source === 'metrics.jsonl' ? readMetricsJsonl(jsonl) : readSummaryCsv(csv);
  return { dir: resolved, name: path.basename(resolved), config: readRunConfig(resolved) ?? {}, epochs, source };
}

/**
 * Reads the run folders that `dirs` name, each once, in the order given: a run folder stands for itself; a sweep
 * folder (one holding run folders rather than being one) stands for the run folders directly inside it (links
 * followed), those of a `pace sweep` folder in the order its plan made them and saying where they stand in it,
 * the others by name with numbers in order (`seed=2` before `seed=10`). The first that cannot be read is an error.
 */
export function readRuns(dirs: string[]): RunRecord[] {
  return readRunFolders(dirs, false).runs;
}

/**
 * {@link readRuns}, with the run folders found in a sweep folder that cannot be read set aside with the reason
 * (a run folder named on its own is still an error): one damaged run of a sweep leaves the others readable.
 */
export function readRunsSettingAside(dirs: string[]): { runs: RunRecord[]; unreadable: UnreadableRun[] } {
  return readRunFolders(dirs, true);
}

/** The run folders `dirs` name, read; `setAside`: those of a sweep folder that fail are listed, not thrown. */
function readRunFolders(dirs: string[], setAside: boolean): { runs: RunRecord[]; unreadable: UnreadableRun[] } {
  if (dirs.length === 0) throw new PaceNotFoundError('no run folder given');
  const found = findRunFolders(dirs);
  const unreadable = [...found.unreadable];
  if (!setAside) refuseUnreadable(unreadable);
  const memberships = sweepMemberships(found.runs.map((run) => run.dir));
  const place = (dir: string) => memberships.get(dir)?.order ?? Infinity;
  const ordered = [...found.runs].sort(
    (a, b) =>
      a.given - b.given || place(a.dir) - place(b.dir) || compareNames(path.basename(a.dir), path.basename(b.dir)),
  );
  const runs: RunRecord[] = [];
  for (const { dir, inSweep } of ordered) {
    try {
      const record = readRun(dir);
      const sweep = memberships.get(dir);
      runs.push(sweep ? { ...record, sweep } : record);
    } catch (error) {
      if (!setAside || !inSweep) throw error;
      unreadable.push({ dir, reason: (error as Error).message });
    }
  }
  if (runs.length === 0) {
    throw new PaceFileError(
      `no run folder could be read: ${unreadable.map((u) => `${u.dir}: ${u.reason}`).join('; ')}`,
    );
  }
  return { runs, unreadable };
}
