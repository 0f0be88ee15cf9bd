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
// A configure that failed leaves a cache without a build file; cmake-js would then try to build it.
const configured = ['build.ninja', 'Makefile'].some((file) => fs.existsSync(path.join(buildDir, file)));
if (!configured) fs.rmSync(buildDir, { recursive: true, force: true });

const cmakeJs = require.resolve('cmake-js/bin/cmake-js');
const parallel = String(Math.max(1, Math.min(os.availableParallelism?.() ?? os.cpus().length, 16)));
const args = [cmakeJs, 'build', '--directory', root, '--out', buildDir, '--parallel', parallel, ...extra];
if (process.env.PACE_BUILD_DEBUG === '1') args.push('--debug');

// Output is never silenced: cmake-js's quieter log levels also swallow the compiler's errors.
const result = spawnSync(process.execPath, args, { cwd: root, stdio: 'inherit' });
if (result.error) throw result.error;
process.exit(result.status ?? 1);
