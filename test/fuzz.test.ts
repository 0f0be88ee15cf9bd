import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

import { makeTempDir, repoRoot } from './support/paths';
import { testIf } from './support/test-if';

const hasClang = spawnSync('sh', ['-c', 'command -v clang++'], { encoding: 'utf8' }).status === 0;

// A bounded libFuzzer run (address + undefined-behaviour sanitizers) of the native safetensors and .npz readers
// from the committed seed corpus; the bootstrap installs Debian's clang so this runs in npm test.
testIf(hasClang, 'no clang++ on the PATH; scripts/bootstrap.sh installs clang')(
  'fuzzing the native parsers for 15 s each finds no crash and leaves no scratch file',
  () => {
    // The targets' input files go to the TMPDIR the script gives them and are removed with it; an old build wrote
    // them to /tmp whatever TMPDIR said (24 had piled up): checked in both.
    const scratch = makeTempDir('fuzz');
    const inTmp = () => new Set(fs.readdirSync('/tmp').filter((name) => name.startsWith('pace-fuzz-')));
    const before = inTmp();
    // A fixed seed: a crash the fuzzer has yet to reach would otherwise turn up in one run in many, failing a
    // change that has nothing to do with it (a longer, unseeded `scripts/fuzz.sh 600` is the search for them).
    const run = spawnSync('bash', [path.join(repoRoot, 'scripts', 'fuzz.sh'), '15', '20261205'], {
      cwd: repoRoot,
      encoding: 'utf8',
      env: { ...process.env, TMPDIR: scratch.dir },
    });
    const leftBehind = [...fs.readdirSync(scratch.dir), ...[...inTmp()].filter((name) => !before.has(name))];
    scratch.cleanup();
    console.log(run.stdout.trim());
    expect(run.stderr).not.toContain('CRASHED');
    expect(run.status).toBe(0);
    const runs = [...run.stdout.matchAll(/stat::number_of_executed_units: (\d+)/g)].map((m) => Number(m[1]));
    expect(runs).toHaveLength(2);
    for (const count of runs) expect(count).toBeGreaterThan(1000);
    expect(leftBehind).toEqual([]);
  },
  600000,
);
