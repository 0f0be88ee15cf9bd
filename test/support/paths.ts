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
