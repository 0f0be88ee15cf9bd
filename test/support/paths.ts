import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

/** The repository root. */
export const repoRoot = path.resolve(__dirname, '../..');

/** The shared parity fixtures: `../shared/fixtures` beside the clone, or PACE_FIXTURES. */
export const fixturesDir = process.env.PACE_FIXTURES ?? path.resolve(repoRoot, '../shared/fixtures');

/** Every safetensors fixture, by file name. */
export function fixtureSafetensorsFiles(): string[] {
  return fs
    .readdirSync(fixturesDir)
    .filter((name) => name.endsWith('.safetensors'))
    .sort();
}

/** A fresh temporary directory, removed by the returned cleanup function. */
export function makeTempDir(prefix: string): { dir: string; cleanup: () => void } {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `pace-${prefix}-`));
  return { dir, cleanup: () => fs.rmSync(dir, { recursive: true, force: true }) };
}

/** Whether `dir` is on a filesystem held in memory (tmpfs, ramfs), where fsync returns at once. */
export function inMemory(dir: string): boolean {
  const type = fs.statfsSync(dir).type;
  return type === 0x01021994 || type === 0x858458f6;
}

/**
 * A fresh temporary directory on a disk-backed filesystem where there is one: in the system's temporary folder, or,
 * where that is held in memory (tmpfs), in the clone's git-ignored `.cache` folder. For tests that need a file
 * write to take a disk's time (fsync). `inMemory` says whether it still is in memory.
 */
export function makeDiskTempDir(prefix: string): { dir: string; cleanup: () => void; inMemory: boolean } {
  let parent = os.tmpdir();
  if (inMemory(parent)) {
    const cache = path.join(repoRoot, '.cache');
    fs.mkdirSync(cache, { recursive: true });
    if (!inMemory(cache)) parent = cache;
  }
  const dir = fs.mkdtempSync(path.join(parent, `pace-${prefix}-`));
  return { dir, cleanup: () => fs.rmSync(dir, { recursive: true, force: true }), inMemory: inMemory(dir) };
}
