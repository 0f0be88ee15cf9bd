import { spawnSync, type SpawnSyncReturns } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

import { createModel, tensor, Trainer } from '../lib';
import { binaryPackageName, type BinaryDescription } from '../lib/install/binaries';
import { torchSeries } from '../lib/install/libtorch';
import { makeTempDir, repoRoot } from './support/paths';

// The package as a user gets it: `npm pack`, then `npm install` of the tarball into a new, empty project. One
// prebuild (the addon with RUNPATH $ORIGIN/libtorch, packed as @pace-peft/<platform>-torch<x.y>-<variant>) serves
// every case here; the source-build case reuses the compiler cache, so it costs about a minute.
const temp = makeTempDir('install');
afterAll(() => temp.cleanup());

const spec = { family: 'vit', imgSize: 16, patchSize: 8, embedDim: 32, depth: 2, numHeads: 2, numClasses: 4 };
/** Run inside the installed project: a forward and one PACE step through the installed copy. */
const smoke = `
const { createModel, tensor, Trainer, doctor } = require('pace-peft');
(async () => {
  const model = await createModel(${JSON.stringify(spec)}, { seed: 1 });
  const x = tensor(Float32Array.from({ length: 2 * 3 * 16 * 16 }, (_, i) => Math.sin(i)), [2, 3, 16, 16]);
  const logits = Array.from((await model.forward(x)).toFloat32Array());
  model.addAdapters({ rank: 2 });
  const step = await new Trainer(model, { pace: { sigma: 0.5, lambda: 1 }, seed: 2 }).trainStep(x, tensor(new BigInt64Array([1n, 3n])));
  console.log(JSON.stringify({ logits, loss: step.totalLoss, addon: doctor().addon, reason: doctor().addonReason }));
})();`;

/** The same computation in this process (the repository's own build), to compare the installed copy with. */
async function expectedSmoke(): Promise<{ logits: number[]; loss: number }> {
  using model = await createModel(spec as Parameters<typeof createModel>[0], { seed: 1 });
  using x = tensor(
    Float32Array.from({ length: 2 * 3 * 16 * 16 }, (_, i) => Math.sin(i)),
    [2, 3, 16, 16],
  );
  using logits = await model.forward(x);
  model.addAdapters({ rank: 2 });
  using targets = tensor(new BigInt64Array([1n, 3n]));
  const step = await new Trainer(model, { pace: { sigma: 0.5, lambda: 1 }, seed: 2 }).trainStep(x, targets);
  return { logits: Array.from(logits.toFloat32Array()), loss: step.totalLoss };
}

function run(
  command: string,
  args: string[],
  options: { cwd: string; env?: NodeJS.ProcessEnv },
): SpawnSyncReturns<string> {
  return spawnSync(command, args, { ...options, encoding: 'utf8', timeout: 600_000 });
}

/** A folder on the PATH with node, npm and sh only: no cmake, no compiler. */
function toolsWithoutCompiler(): string {
  const tools = path.join(temp.dir, 'tools');
  fs.mkdirSync(tools, { recursive: true });
  fs.symlinkSync(process.execPath, path.join(tools, 'node'));
  const npm = (process.env.PATH ?? '')
    .split(path.delimiter)
    .map((dir) => path.join(dir, 'npm'))
    .find((file) => fs.existsSync(file))!;
  fs.symlinkSync(fs.realpathSync(npm), path.join(tools, 'npm'));
  fs.symlinkSync('/bin/sh', path.join(tools, 'sh'));
  return tools;
}

/** A new project that installs `tarballs`; returns npm's result (install scripts in the foreground). */
function installInto(name: string, tarballs: string[], env: NodeJS.ProcessEnv = process.env) {
  const dir = path.join(temp.dir, name);
  fs.mkdirSync(dir);
  fs.writeFileSync(path.join(dir, 'package.json'), JSON.stringify({ name, version: '1.0.0', private: true }));
  const started = performance.now();
  const result = run(
    'npm',
    // The dependencies' metadata may come from the registry (npm ci cached only their tarballs): retried more
    // than npm's default twice, so that one slow answer does not fail the suite.
    [
      'install',
      '--prefer-offline',
      '--fetch-retries=5',
      '--no-audit',
      '--no-fund',
      '--foreground-scripts',
      ...tarballs,
    ],
    {
      cwd: dir,
      env,
    },
  );
  return { dir, result, seconds: (performance.now() - started) / 1000, output: `${result.stdout}${result.stderr}` };
}

/** A copy of a binary package with its binary.json or addon changed, packed. */
function fakeBinary(from: string, name: string, change: (dir: string) => void): string {
  const dir = path.join(temp.dir, 'fakes', name.split('/')[1]);
  fs.cpSync(from, dir, { recursive: true });
  const manifest = JSON.parse(fs.readFileSync(path.join(dir, 'package.json'), 'utf8'));
  fs.writeFileSync(path.join(dir, 'package.json'), JSON.stringify({ ...manifest, name }));
  change(dir);
  const packed = run('npm', ['pack', '--silent', '--pack-destination', path.dirname(dir)], { cwd: dir });
  return path.join(path.dirname(dir), packed.stdout.trim().split('\n').pop()!);
}

let mainTarball: string;
let binaryTarball: string;
let otherSeriesBinary: string;
let broken: string;
let tools: string;
let expected: { logits: number[]; loss: number };
/** The prebuilt binary's package (this machine's libtorch, e.g. @pace-peft/linux-x64-torch1.13-cpu), its series
 *  ("1.13") and a package for another series that the install must skip. */
let built: { name: string; series: string; other: string; otherVersion: string };
const escaped = (text: string) => text.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');

beforeAll(async () => {
  const prebuild = run(path.join(repoRoot, 'node_modules', '.bin', 'tsx'), ['scripts/prebuild.ts'], { cwd: repoRoot });
  expect(prebuild.status).toBe(0);
  binaryTarball = prebuild.stdout.trim().split('\n').pop()!;
  const { libtorch } = JSON.parse(
    run('tar', ['xzf', binaryTarball, '-O', 'package/binary.json'], { cwd: temp.dir }).stdout,
  ) as BinaryDescription;
  const otherVersion = torchSeries(libtorch.version) === '2.5' ? '2.4.1' : '2.5.1';
  built = {
    name: binaryPackageName(libtorch),
    series: torchSeries(libtorch.version),
    other: binaryPackageName({ ...libtorch, version: otherVersion }),
    otherVersion,
  };
  const binaryDir = path.join(repoRoot, 'prebuilds', built.name.split('/')[1]);
  otherSeriesBinary = fakeBinary(binaryDir, built.other, (dir) => {
    const description = JSON.parse(fs.readFileSync(path.join(dir, 'binary.json'), 'utf8'));
    description.libtorch.version = built.otherVersion;
    fs.writeFileSync(path.join(dir, 'binary.json'), JSON.stringify(description));
  });
  broken = fakeBinary(binaryDir, built.name, (dir) =>
    fs.writeFileSync(path.join(dir, 'pace_peft.node'), 'not a shared library'),
  );
  tools = toolsWithoutCompiler();
  const pack = run('npm', ['pack', '--silent', '--pack-destination', temp.dir], { cwd: repoRoot });
  expect(pack.status).toBe(0);
  mainTarball = path.join(temp.dir, pack.stdout.trim().split('\n').pop()!);
  expected = await expectedSmoke();
}, 600_000);

test('the packed tarball holds what the source build needs, and nothing of the checkout-only targets', () => {
  const listing = run('tar', ['tzf', mainTarball], { cwd: temp.dir }).stdout.split('\n');
  for (const file of [
    'CMakeLists.txt',
    'cmake/PaceFindTorch.cmake',
    'cmake/ccache-launch.sh',
    'scripts/install.js',
    'scripts/build-native.js',
    'dist/cli.js',
    'native/core/pch.h',
    'native/addon/addon.cpp',
  ]) {
    expect(listing).toContain(`package/${file}`);
  }
  expect(listing.filter((f) => /core-tests|fuzz|bench\//.test(f))).toEqual([]);
  const manifest = JSON.parse(run('tar', ['xzf', mainTarball, '-O', 'package/package.json'], { cwd: temp.dir }).stdout);
  expect(manifest.optionalDependencies).toEqual({ [built.name]: manifest.version });
  // The committed package.json is back as it was.
  expect(JSON.parse(fs.readFileSync(path.join(repoRoot, 'package.json'), 'utf8')).optionalDependencies).toBeUndefined();
});

test('with the prebuilt binary, the install compiles nothing (no cmake or compiler on the PATH) and runs', () => {
  const env = { ...process.env, PATH: tools };
  const install = installInto('prebuilt', [mainTarball, binaryTarball], env);
  console.log(`install from the tarball with the prebuilt binary: ${install.seconds.toFixed(1)} s`);
  expect(install.result.status).toBe(0);
  expect(install.output).toContain(`pace-peft: using prebuilt ${built.name}`);
  expect(fs.existsSync(path.join(install.dir, 'node_modules', 'pace-peft', 'build', 'Release'))).toBe(false);
  const smokeRun = run(process.execPath, ['-e', smoke], { cwd: install.dir, env: { ...env, LD_DEBUG: 'libs' } });
  expect(smokeRun.status).toBe(0);
  const result = JSON.parse(smokeRun.stdout.trim().split('\n').pop()!);
  expect(result.addon).toBe(path.join(install.dir, 'node_modules', built.name, 'pace_peft.node'));
  expect(result.reason).toMatch(
    new RegExp(`^prebuilt ${escaped(built.name)}: matches libtorch ${escaped(built.series)}`),
  );
  // Same libtorch, same code: the installed copy computes what the repository's build computes, bit for bit.
  expect(result.logits).toEqual(expected.logits);
  expect(result.loss).toBe(expected.loss);
  // libtorch came through the package's link ($ORIGIN/libtorch), with no LD_LIBRARY_PATH: the library initialised
  // is the one opened there (the loader also tries the link's path when the link is broken, then finds the
  // system's copy; its "trying file" lines alone could not tell).
  expect(smokeRun.stderr).toMatch(new RegExp(`calling init: .*${escaped(built.name)}/libtorch/libc10\\.so`));
}, 600_000);

test('a binary for another libtorch and a binary that fails its test-load are skipped, naming why; the source build takes over', () => {
  const install = installInto('source', [mainTarball, otherSeriesBinary, broken]);
  console.log(`install from the tarball with a source build (compiler cache warm): ${install.seconds.toFixed(1)} s`);
  expect(install.result.status).toBe(0);
  expect(install.output).toContain(
    `skipping ${built.other}: it is built for libtorch ${built.otherVersion}, the libtorch found is ${built.series}`,
  );
  expect(install.output).toMatch(
    new RegExp(`skipping ${escaped(built.name)}: its test-load failed: .*(invalid ELF header|too short)`),
  );
  expect(install.output).toContain('building from source');
  // The project's Node headers lie beside the package: paths under their common folder are hashed relative, so a
  // source build in another project reuses the compiler cache's objects (the addon's alone took 85 s here).
  const rules = fs.readFileSync(
    path.join(install.dir, 'node_modules', 'pace-peft', 'build-native', 'CMakeFiles', 'rules.ninja'),
    'utf8',
  );
  if (rules.includes('ccache')) expect(rules).toContain(`CCACHE_BASEDIR=${path.join(install.dir, 'node_modules')} `);
  const smokeRun = run(process.execPath, ['-e', smoke], { cwd: install.dir });
  expect(smokeRun.stderr).toBe('');
  const result = JSON.parse(smokeRun.stdout.trim().split('\n').pop()!);
  expect(result.reason).toBe('built from source (build/Release)');
  expect(result.logits).toEqual(expected.logits);
  expect(result.loss).toBe(expected.loss);
}, 600_000);

test('with no usable binary and no compiler, the install fails saying what it found and what to install', () => {
  const install = installInto('nothing', [mainTarball, otherSeriesBinary], { ...process.env, PATH: tools });
  expect(install.result.status).not.toBe(0);
  expect(install.output).toContain(`no usable prebuilt binary (wanted ${built.name}) and no cmake or c++ to build one`);
  expect(install.output).toContain(`Found libtorch ${built.series}`);
  expect(install.output).toContain(`Skipped ${built.other}: it is built for libtorch ${built.otherVersion}`);
  expect(install.output).toContain('PACE_BUILD_FROM_SOURCE=1 npm rebuild pace-peft');
}, 600_000);
