import fs from 'node:fs';
import path from 'node:path';

import { PaceUnsupportedError } from '../errors';
import { writeFileAtomic } from '../files';
import {
  addonFileName,
  chooseBinary,
  findBinaryPackages,
  sameFolder,
  type BinaryChoice,
  type BinaryDescription,
} from './binaries';
import {
  describeLibtorch,
  describeNow,
  findLibtorch,
  libtorchOfTorchDir,
  namedLibtorch,
  libtorchSearchOrder,
  pythonTorchFailure,
  torchSeries,
  versionInTorchDir,
  versionNow,
  type LibtorchInfo,
} from './libtorch';

/** The package root: `lib/` (sources) and `dist/` (compiled) both sit one level below `install/`'s parent. */
export const packageRoot = path.resolve(__dirname, '..', '..');

/** The addon a source build writes. */
export const sourceBuildFile = path.join(packageRoot, 'build', 'Release', addonFileName);

/** Where the binary chosen at install (or first load) is recorded. */
export const choiceRecordFile = path.join(packageRoot, 'build', 'binary.json');

/** This package's version: a binary package built from another is not used. */
export function packageVersion(): string {
  return (JSON.parse(fs.readFileSync(path.join(packageRoot, 'package.json'), 'utf8')) as { version: string }).version;
}

/** The addon to load and why it was chosen (`pace doctor` prints both). */
export interface AddonLocation {
  file: string;
  reason: string;
  /** The library folder of the libtorch the addon was built or chosen for, where known. */
  libDir?: string;
}

interface ChoiceRecord extends AddonLocation {
  package: string;
  libtorch: LibtorchInfo;
}

/** Records a chosen binary package, so later loads need no search or test-load. */
export function recordChoice(choice: Required<Pick<BinaryChoice, 'chosen'>>, info: LibtorchInfo): AddonLocation {
  const file = path.join(choice.chosen.dir, addonFileName);
  const reason = `prebuilt ${choice.chosen.name}: matches ${describeLibtorch(info)} and passed its test-load`;
  const record: ChoiceRecord = { file, reason, package: choice.chosen.name, libtorch: info };
  fs.mkdirSync(path.dirname(choiceRecordFile), { recursive: true });
  writeFileAtomic(choiceRecordFile, `${JSON.stringify(record, null, 2)}\n`); // read whole by other processes
  return { file, reason, libDir: info.libDir };
}

/**
 * The chosen binary recorded earlier, if its file and its libtorch folder are still there, that libtorch is still
 * of the series and variant it was chosen for (`pip install -U torch` upgrades it in place, and a `pip install`
 * of the CPU wheel over the CUDA one keeps the version) and it was built from this package's version.
 */
function recordedChoice(): ChoiceRecord | undefined {
  try {
    const record = JSON.parse(fs.readFileSync(choiceRecordFile, 'utf8')) as ChoiceRecord;
    const description = JSON.parse(
      fs.readFileSync(path.join(path.dirname(record.file), 'binary.json'), 'utf8'),
    ) as BinaryDescription;
    if (
      fs.existsSync(record.file) &&
      fs.existsSync(record.libtorch.libDir) &&
      sameSeries(versionNow(record.libtorch), record.libtorch.version) &&
      sameVariant(describeNow(record.libtorch)?.variant, record.libtorch.variant) &&
      description.packageVersion === packageVersion()
    ) {
      return record;
    }
  } catch {
    // no record, or an unreadable one: choose again
  }
  return undefined;
}

const modified = (file: string) => fs.statSync(file).mtimeMs;

/**
 * Whether a libtorch still declares the series (major.minor, what a binary is keyed by) it was built against; one
 * whose version can no longer be read (a Docker image that purged libtorch-dev after building) is given the
 * benefit of the doubt: a library truly gone fails at its load with the loader's own message.
 */
const sameSeries = (now: string | undefined, built: string) =>
  now === undefined || torchSeries(now) === torchSeries(built);

/**
 * Whether a libtorch read now is of the variant a binary was chosen for: CUDA or not, and the same CUDA where both
 * are known. One that cannot be read is given the benefit of the doubt, as by {@link sameSeries}.
 */
const sameVariant = (now: string | undefined, chosen: string) =>
  now === undefined ||
  ((now === 'cpu') === (chosen === 'cpu') && (now === chosen || now === 'cuda' || chosen === 'cuda'));

/**
 * Refuses an addon whose libtorch (in `libDir`) is not the one LIBTORCH names now: set after the install (to use a
 * CUDA libtorch, say), it would otherwise be passed over without a word. A LIBTORCH holding no libtorch is refused
 * as the install refuses it.
 */
function checkNamedLibtorch(libDir: string, addon: string, rebuild: string): void {
  if (!namedLibtorch()) return;
  const named = findLibtorch({ LIBTORCH: process.env.LIBTORCH, INIT_CWD: process.env.INIT_CWD });
  if (!named || sameFolder(named.libDir, libDir)) return;
  throw new PaceUnsupportedError(
    `pace-peft: LIBTORCH names ${describeLibtorch(named)}, but ${addon} uses the libtorch at ${libDir}; to use ` +
      `the one LIBTORCH names, ${rebuild} with LIBTORCH set, or unset LIBTORCH`,
  );
}

/** What a source build records beside its addon (CMakeLists.txt): the libtorch it was built against. */
export const sourceBuildLibtorchFile = path.join(path.dirname(sourceBuildFile), 'libtorch.json');

/**
 * Refuses a source build whose libtorch has since changed series in place (a `pip install -U torch`): loaded,
 * it would end the process at the first missing symbol, with no word of why. A build without the record (made
 * before it existed) is not checked. Returns the libtorch's library folder, where known.
 */
function checkSourceBuildLibtorch(): string | undefined {
  let built: { version: string; torchDir: string };
  try {
    built = JSON.parse(fs.readFileSync(sourceBuildLibtorchFile, 'utf8')) as typeof built;
  } catch {
    return undefined;
  }
  const rebuild = '`PACE_BUILD_FROM_SOURCE=1 npm rebuild pace-peft` (in a checkout: `npm run build:native`)';
  const now = versionInTorchDir(built.torchDir);
  if (!sameSeries(now, built.version)) {
    throw new PaceUnsupportedError(
      `pace-peft: the addon in build/Release was built against libtorch ${built.version} (${built.torchDir}), ` +
        `which is now ${now}; rebuild it: ${rebuild}`,
    );
  }
  // (Its library folder unknown, a libtorch-dev purged after the build, it is not held against LIBTORCH.)
  const libDir = libtorchOfTorchDir(built.torchDir, 'LIBTORCH')?.libDir;
  if (libDir) checkNamedLibtorch(libDir, 'the addon in build/Release', `rebuild it: ${rebuild}`);
  return libDir;
}

/** What to tell a user for whom no addon can be found or built. */
export function noAddonMessage(info: LibtorchInfo | undefined, choice: BinaryChoice | undefined): string {
  const lines = ['pace-peft: no native addon for this machine.'];
  if (!info) {
    lines.push(`No libtorch was found (looked in: ${libtorchSearchOrder}).`);
    const python = pythonTorchFailure();
    if (python) lines.push(`python3 could not import torch: ${python}`);
    lines.push(
      'Install one: `apt-get install libtorch-dev libopenblas0-openmp` (Debian/Ubuntu), `pip install torch`, or an unpacked libtorch in LIBTORCH.',
    );
  } else {
    lines.push(`Found ${describeLibtorch(info)}.`);
    if (!choice || (choice.skipped.length === 0 && !choice.chosen)) {
      lines.push('No prebuilt binary package (@pace-peft/*) is installed.');
    }
    for (const { name, reason } of choice?.skipped ?? []) lines.push(`Skipped ${name}: ${reason}.`);
  }
  lines.push(
    'Build from source: `PACE_BUILD_FROM_SOURCE=1 npm rebuild pace-peft` (needs cmake >= 3.18, a C++17 compiler, nlohmann-json and zlib headers; Debian: apt-get install cmake g++ nlohmann-json3-dev zlib1g-dev).',
  );
  return lines.join('\n');
}

/**
 * The addon to load: of a source build (build/Release) and the binary package recorded at install, the one made
 * last (an install that chose a binary after an earlier source build uses the binary); else the binary package
 * that matches the libtorch found now and passes a test-load in a child process (recorded for next time).
 */
export function locateAddon(): AddonLocation {
  const recorded = recordedChoice();
  if (fs.existsSync(sourceBuildFile) && (!recorded || modified(sourceBuildFile) >= modified(choiceRecordFile))) {
    const libDir = checkSourceBuildLibtorch();
    return { file: sourceBuildFile, reason: 'built from source (build/Release)', ...(libDir && { libDir }) };
  }
  if (recorded) {
    checkNamedLibtorch(recorded.libtorch.libDir, recorded.package, 'choose again: `npm rebuild pace-peft`');
    return { file: recorded.file, reason: recorded.reason, libDir: recorded.libtorch.libDir };
  }
  const info = findLibtorch();
  const choice = info
    ? chooseBinary(findBinaryPackages(packageRoot), info, Number(process.versions.napi), packageVersion())
    : undefined;
  if (!info || !choice?.chosen) throw new PaceUnsupportedError(noAddonMessage(info, choice));
  try {
    return recordChoice({ chosen: choice.chosen }, info);
  } catch {
    // a read-only install (an Electron app's resources): use it without recording
    const file = path.join(choice.chosen.dir, addonFileName);
    return { file, reason: `prebuilt ${choice.chosen.name}`, libDir: info.libDir };
  }
}
