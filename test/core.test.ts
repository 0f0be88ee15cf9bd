import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

import { makeTempDir, repoRoot } from './support/paths';

// The core is built and tested without Node too: its own C++ test executable runs once, and each of its tests
// becomes a jest test here, so a C++ test that cannot run on this machine (no GPU, no AVX2) shows as skipped
// with its reason instead of passed.
const binary = path.join(repoRoot, 'build', 'Release', 'pace_core_tests');
// Its files go to the TMPDIR it is given, and are gone when it exits: checked there and in /tmp, where an old build
// wrote them whatever TMPDIR said (16 folders had piled up). Its folder's name holds its process id, so other runs'
// folders in /tmp on a shared machine are not counted.
const scratch = makeTempDir('core-tests');
const run = spawnSync(binary, { encoding: 'utf8', env: { ...process.env, TMPDIR: scratch.dir } });
const leftBehind = [
  ...fs.readdirSync(scratch.dir),
  ...fs.readdirSync('/tmp').filter((name) => name.startsWith(`pace-core-tests-${run.pid}-`)),
];
scratch.cleanup();
const results = [...(run.stdout ?? '').matchAll(/^(ok|FAIL|skip) {1,3}(.*?)(?:: (.*))?$/gm)].map(
  ([, status, name, detail]) => ({ status, name, detail }),
);

test('the native core test executable runs and reports every test it ran', () => {
  expect(run.error).toBeUndefined();
  const summary = /^core: (\d+) passed, (\d+) failed, (\d+) skipped$/m.exec(run.stdout);
  expect(summary).not.toBeNull();
  const [passed, failed, skipped] = summary!.slice(1).map(Number);
  expect(passed).toBeGreaterThan(0);
  expect(results.filter((r) => r.status === 'ok')).toHaveLength(passed);
  expect(results.filter((r) => r.status === 'FAIL')).toHaveLength(failed);
  expect(results.filter((r) => r.status === 'skip')).toHaveLength(skipped);
  expect(run.status).toBe(failed === 0 ? 0 : 1);
});

test('the core test executable removes the files it wrote', () => {
  expect(leftBehind).toEqual([]);
});

describe('native core (C++)', () => {
  for (const { status, name, detail } of results) {
    if (status === 'skip') {
      test.skip(`${name} (skipped: ${detail})`, () => undefined);
    } else {
      // (a failure shows its message; one without a message fails all the same)
      test(name, () => expect(status === 'ok' ? 'ok' : `${status}: ${detail ?? ''}`).toBe('ok'));
    }
  }
});
