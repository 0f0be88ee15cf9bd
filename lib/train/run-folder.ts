import fs from 'node:fs';
import path from 'node:path';

import { PaceNotFoundError } from '../errors';
import type { EpochLogs } from './callbacks';

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

function processIsAlive(pid: number): boolean {
  if (pid === process.pid) return true;
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Writes a file through a temporary name, fsync and rename, so readers never see half of it. */
export function writeFileAtomic(file: string, text: string): void {
  const temp = `${file}.tmp-${process.pid}`;
  const fd = fs.openSync(temp, 'w');
  try {
    fs.writeSync(fd, text);
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
  fs.renameSync(temp, file);
}

/**
 * A run folder like timm's: `config.json`, `metrics.jsonl` (one line per epoch), `summary.csv`, and the
 * `last.safetensors` / `previous.safetensors` / `best.safetensors` training checkpoints (written by the trainer).
 */
export class RunFolder {
  /**
   * Opens (and for a new run creates) the folder, removing the temporary files that a killed process left
   * half-written. `mustExist`: resuming from a folder that is not there is an error, not a new run.
   */
  constructor(
    readonly dir: string,
    { mustExist = false }: { mustExist?: boolean } = {},
  ) {
    if (mustExist && !fs.existsSync(dir)) throw new PaceNotFoundError(`resume: the run folder ${dir} does not exist`);
    fs.mkdirSync(dir, { recursive: true });
    for (const name of fs.readdirSync(dir)) {
      const pid = /\.tmp-(\d+)(-\d+)?$/.exec(name)?.[1];
      if (pid !== undefined && !processIsAlive(Number(pid))) fs.rmSync(path.join(dir, name), { force: true });
    }
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

  /** Rewrites metrics.jsonl and summary.csv from the whole history (so a resumed run never duplicates lines). */
  writeHistory(history: EpochLogs[]): void {
    writeFileAtomic(path.join(this.dir, 'metrics.jsonl'), history.map((logs) => `${JSON.stringify(logs)}\n`).join(''));
    const rows = history.map((logs) =>
      columns.map((key) => (logs[key] === undefined ? '' : String(logs[key]))).join(','),
    );
    writeFileAtomic(path.join(this.dir, 'summary.csv'), `${[columns.join(','), ...rows].join('\n')}\n`);
  }
}
