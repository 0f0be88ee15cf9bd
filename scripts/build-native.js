#!/usr/bin/env node
// Builds the native addon with cmake-js (the build of record, CMakeLists.txt) into build/Release/.
// Used by `npm run build:native`, by the install step, by scripts/bootstrap.sh and by binding.gyp, so every
// route to the addon compiles the same sources with the same flags. The CMake tree lives in build-native/,
// outside build/, because node-gyp deletes build/ when it rebuilds. `--out DIR` builds in another tree
// (npm run prebuild); further arguments go to cmake-js (e.g. --CDPACE_PORTABLE_RPATH=ON).
'use strict';
const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const root = path.resolve(__dirname, '..');
const extra = process.argv.slice(2);
const outAt = extra.indexOf('--out');
const buildDir = path.resolve(root, outAt >= 0 ? extra.splice(outAt, 2)[1] : 'build-native');
if (process.env.PACE_BUILD_DEBUG === '1') extra.push('--debug');
// npm runs this from the package's folder: a relative LIBTORCH means the folder the user ran npm in.
const env = { ...process.env };
if (env.LIBTORCH) env.LIBTORCH = path.resolve(env.INIT_CWD ?? process.cwd(), env.LIBTORCH);

// cmake-js configures only a tree without a CMakeCache.txt, and CMake keeps the libtorch and compilers it found in
// its cache: a rebuild with another LIBTORCH, CMAKE_PREFIX_PATH, compiler, CUDA architectures or flags would
// quietly build with the old ones. The tree records what it was configured with and starts again when that
// changes (ccache keeps the objects); so it does when the libtorch it was built against (libtorch.json, written by
// CMakeLists.txt) now declares another version, upgraded in place. A configure that failed leaves a cache
// without a build file: that tree starts again too.
const inputEnv = ['LIBTORCH', 'CMAKE_PREFIX_PATH', 'PACE_CUDA_ARCHITECTURES', 'CXX', 'CC', 'CUDACXX'];
const inputs = JSON.stringify({
  args: extra,
  ...Object.fromEntries(inputEnv.map((name) => [name, env[name] ?? null])),
  ...Object.fromEntries(
    Object.keys(env)
      .filter((name) => name.startsWith('npm_config_cmake_')) // cmake-js turns these into -D settings
      .sort()
      .map((name) => [name, env[name]]),
  ),
});
const inputsFile = path.join(buildDir, 'pace-configured-with.json');
const configured = ['build.ninja', 'Makefile'].some((file) => fs.existsSync(path.join(buildDir, file)));
const sameInputs = fs.existsSync(inputsFile) && fs.readFileSync(inputsFile, 'utf8') === inputs;
if (!configured || !sameInputs || libtorchChanged(path.join(buildDir, 'libtorch.json'))) {
  if (configured) console.error(`build-native: ${buildDir} was configured otherwise; configuring it again`);
  if (fs.existsSync(buildDir) && !ourTree(buildDir)) {
    console.error(`build-native: ${buildDir} is not a build folder of this package; give --out a new or own folder`);
    process.exit(1);
  }
  fs.rmSync(buildDir, { recursive: true, force: true });
}

/** Whether the libtorch a tree was built against now declares another version (unknown: not changed). */
function libtorchChanged(record) {
  try {
    const { version, torchDir } = JSON.parse(fs.readFileSync(record, 'utf8'));
    const declared = /set\(PACKAGE_VERSION "([^"]+)"\)/.exec(
      fs.readFileSync(path.join(torchDir, 'TorchConfigVersion.cmake'), 'utf8'),
    )?.[1];
    return declared !== undefined && declared !== version;
  } catch {
    return false;
  }
}

/** Whether `dir` may be wiped: empty, or a tree this script or CMake made for this checkout (not the checkout). */
function ourTree(dir) {
  if (path.relative(dir, root) === '' || !path.relative(dir, root).startsWith('..')) return false;
  if (fs.readdirSync(dir).length === 0 || fs.existsSync(path.join(dir, 'pace-configured-with.json'))) return true;
  const cache = path.join(dir, 'CMakeCache.txt');
  if (!fs.existsSync(cache)) return false;
  const home = /^CMAKE_HOME_DIRECTORY:INTERNAL=(.*)$/m.exec(fs.readFileSync(cache, 'utf8'))?.[1];
  return home !== undefined && path.resolve(home) === root;
}

const cmakeJs = require.resolve('cmake-js/bin/cmake-js');
const parallel = String(Math.max(1, Math.min(os.availableParallelism?.() ?? os.cpus().length, 16)));
const args = [cmakeJs, 'build', '--directory', root, '--out', buildDir, '--parallel', parallel, ...extra];

// Output is never silenced: cmake-js's quieter log levels also swallow the compiler's errors.
const result = spawnSync(process.execPath, args, { cwd: root, stdio: 'inherit', env });
if (result.error) throw result.error;
// Recorded once the tree is configured (a failed configure leaves no build file, and starts again next time).
if (['build.ninja', 'Makefile'].some((file) => fs.existsSync(path.join(buildDir, file)))) {
  fs.writeFileSync(inputsFile, inputs);
}
process.exit(result.status ?? 1);
