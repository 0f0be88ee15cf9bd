import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

import { choiceRecordFile, noAddonMessage, packageRoot, packageVersion, recordChoice } from './addon-location';
import { binaryPackageName, chooseBinary, findBinaryPackages } from './binaries';
import { describeLibtorch, findLibtorch, namedLibtorch } from './libtorch';

const log = (line: string) => process.stderr.write(`pace-peft: ${line}\n`);

/** Whether `file` is a file this process may run. */
function runnable(file: string): boolean {
  try {
    fs.accessSync(file, fs.constants.X_OK);
    return fs.statSync(file).isFile();
  } catch {
    return false;
  }
}

/** Whether `command` (a name, or a path as CXX may give) can be run. */
function onPath(command: string): boolean {
  if (command.includes(path.sep)) return runnable(command);
  return (process.env.PATH ?? '').split(path.delimiter).some((dir) => dir !== '' && runnable(path.join(dir, command)));
}

/** The C++ compilers CMake would take: CXX (its first word) when set, else the usual names. */
function compilers(): string[] {
  const chosen = process.env.CXX?.trim().split(/\s+/)[0];
  return chosen ? [chosen] : ['c++', 'g++', 'clang++'];
}

/** Builds the addon from source with CMake (scripts/build-native.js); returns the exit status. */
export function buildFromSource(): number {
  fs.rmSync(choiceRecordFile, { force: true });
  const run = spawnSync(process.execPath, [path.join(packageRoot, 'scripts', 'build-native.js')], {
    stdio: 'inherit',
  });
  return run.status ?? 1;
}

/**
 * The package's install step: `PACE_BUILD_FROM_SOURCE=1` builds from source; otherwise the binary package
 * that matches the libtorch found is test-loaded and recorded, and without one the addon is built from
 * source, or the install fails saying what was found and what to install. Returns the exit status.
 */
export function runInstall(): number {
  if (process.env.PACE_BUILD_FROM_SOURCE === '1') {
    // CMake looks in a LIBTORCH only, and says what it lacks; a folder that is not there is said at once.
    const named = namedLibtorch();
    if (named && !fs.existsSync(named)) {
      log(`LIBTORCH=${process.env.LIBTORCH} does not exist (${named})`);
      return 1;
    }
    log('PACE_BUILD_FROM_SOURCE=1: building the addon from source');
    return buildFromSource();
  }
  let info;
  try {
    info = findLibtorch();
  } catch (error) {
    log((error as Error).message); // LIBTORCH names a folder without a libtorch
    return 1;
  }
  if (!info) {
    process.stderr.write(`${noAddonMessage(undefined, undefined)}\n`);
    return 1;
  }
  const choice = chooseBinary(findBinaryPackages(packageRoot), info, Number(process.versions.napi), packageVersion());
  for (const { name, reason } of choice.skipped) log(`skipping ${name}: ${reason}`);
  if (choice.chosen) {
    const { reason } = recordChoice({ chosen: choice.chosen }, info);
    log(`using ${reason}`);
    if (choice.warning) log(`warning: ${choice.chosen.name}: ${choice.warning}`);
    return 0;
  }
  const missing = [
    ...(onPath('cmake') ? [] : ['cmake']),
    ...(compilers().some(onPath) ? [] : [process.env.CXX ? `CXX=${process.env.CXX}` : 'c++']),
  ];
  if (missing.length > 0) {
    log(`no usable prebuilt binary (wanted ${binaryPackageName(info)}) and no ${missing.join(' or ')} to build one.`);
    process.stderr.write(`${noAddonMessage(info, choice)}\n`); // (its lines start with pace-peft: already)
    return 1;
  }
  log(`no prebuilt binary for ${describeLibtorch(info)} (wanted ${binaryPackageName(info)}): building from source`);
  return buildFromSource();
}
