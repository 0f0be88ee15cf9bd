import { spawnSync } from 'node:child_process';
import path from 'node:path';

import { repoRoot } from './support/paths';

// The core is built and tested without Node too: its own C++ test executable must pass.
test('the native core passes its own C++ tests', () => {
  const binary = path.join(repoRoot, 'build', 'Release', 'pace_core_tests');
  const run = spawnSync(binary, { encoding: 'utf8' });
  expect(run.error).toBeUndefined();
  expect(run.stdout).toMatch(/^core: [1-9]\d* passed, 0 failed$/m);
  expect(run.status).toBe(0);
});
