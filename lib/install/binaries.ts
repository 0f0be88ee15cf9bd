import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

import { platformKey, torchSeries, type LibtorchInfo } from './libtorch';
import { addonLoadEnvironment } from './load-environment';

/** The scope every binary package is published under. */
export const binaryScope = '@pace-peft';

/** The file name of the addon inside a binary package (and of a source build, under build/Release/). */
export const addonFileName = 'pace_peft.node';

/** `binary.json` of a binary package: what its addon was built against and assumes. */
export interface BinaryDescription {
  platform: string;
  libtorch: { version: string; variant: string; cxx11Abi: 0 | 1 };
  napiVersion: number;
  /** CUDA architectures its kernels were compiled for (empty for a CPU build). */
  cudaArchitectures: string[];
  /** CPU features its own kernels use where present (they are chosen at run time, never required). */
  cpuFeatures: string[];
  /** The pace-peft version it was built from. */
  packageVersion: string;
}

/** A binary package found on disk. */
export interface BinaryPackage {
  name: string;
  dir: string;
  description?: BinaryDescription;
}

/**
 * The binary package a libtorch needs: `@pace-peft/linux-x64-torch1.13-cpu`. Builds against a libtorch of the
 * pre-C++11 ABI (pip's torch before 2.7, PyTorch's plain libtorch downloads) end in `-precxx11`, so that they and
 * the C++11 ABI's builds of one series (Debian's, conda's, later pip's) can both be published.
 */
export function binaryPackageName(
  info: Pick<LibtorchInfo, 'version' | 'variant' | 'cxx11Abi'>,
  platform = platformKey(),
): string {
  const abi = info.cxx11Abi === 0 ? '-precxx11' : '';
  return `${binaryScope}/${platform}-torch${torchSeries(info.version)}-${info.variant}${abi}`;
}

/** A binary package's name for this platform (`linux-x64-torch2.5-cu124`, the part after the scope). */
const binaryNameHere = () =>
  new RegExp(
    `^${platformKey().replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}-torch\\d+\\.\\d+-(cpu|cu\\d+|cuda)(-precxx11)?$`,
  );

/**
 * Every binary package for this platform in the node_modules folders above `from` (nearest first). Each is
 * test-loaded, which runs its code: other packages of the scope (`@pace-peft/anything`) are not considered, and
 * one whose binary.json describes another package is refused ({@link mismatch}).
 */
export function findBinaryPackages(from: string): BinaryPackage[] {
  const found = new Map<string, BinaryPackage>();
  const ours = binaryNameHere();
  for (let dir = path.resolve(from); ; dir = path.dirname(dir)) {
    const scope = path.join(dir, path.basename(dir) === 'node_modules' ? '' : 'node_modules', binaryScope);
    if (fs.existsSync(scope)) {
      for (const entry of fs.readdirSync(scope).sort()) {
        if (!ours.test(entry)) continue;
        const name = `${binaryScope}/${entry}`;
        const packageDir = path.join(scope, entry);
        if (found.has(name) || !fs.existsSync(path.join(packageDir, 'package.json'))) continue;
        let description: BinaryDescription | undefined;
        try {
          description = JSON.parse(fs.readFileSync(path.join(packageDir, 'binary.json'), 'utf8')) as BinaryDescription;
        } catch {
          description = undefined;
        }
        found.set(name, { name, dir: packageDir, description });
      }
    }
    if (path.dirname(dir) === dir) break;
  }
  return [...found.values()];
}

/** Why a binary package cannot serve this libtorch, or undefined when it can. */
export function mismatch(
  binary: BinaryPackage,
  info: LibtorchInfo,
  napiVersion: number,
  packageVersion: string,
): string | undefined {
  const d = binary.description;
  if (!d) return 'it has no readable binary.json';
  if (!d.libtorch || !d.platform) return 'its binary.json does not say its platform and libtorch';
  if (binaryPackageName(d.libtorch, d.platform) !== binary.name) {
    return `its binary.json describes ${binaryPackageName(d.libtorch, d.platform)}, not this package`;
  }
  if (d.packageVersion !== packageVersion) {
    return `it is built from pace-peft ${d.packageVersion}, this is pace-peft ${packageVersion}`;
  }
  if (d.platform !== platformKey()) return `it is built for ${d.platform}, this machine is ${platformKey()}`;
  if (torchSeries(d.libtorch.version) !== torchSeries(info.version)) {
    return `it is built for libtorch ${d.libtorch.version}, the libtorch found is ${info.version}`;
  }
  if (d.libtorch.variant !== info.variant) {
    return `it is built for libtorch ${d.libtorch.variant}, the libtorch found is ${info.variant}`;
  }
  if (d.libtorch.cxx11Abi !== info.cxx11Abi) {
    return `it is built with _GLIBCXX_USE_CXX11_ABI=${d.libtorch.cxx11Abi}, the libtorch found has ${info.cxx11Abi}`;
  }
  if (d.napiVersion > napiVersion) return `it needs N-API ${d.napiVersion}, this Node has ${napiVersion}`;
  return undefined;
}

/**
 * Points `<package>/libtorch` at the found libtorch's library folder: the prebuilt addon's RUNPATH is
 * `$ORIGIN/libtorch`, so it loads that libtorch wherever it lives, without LD_LIBRARY_PATH.
 */
export function linkLibtorch(binary: BinaryPackage, info: LibtorchInfo): void {
  const link = path.join(binary.dir, 'libtorch');
  let current: string | undefined;
  try {
    current = fs.readlinkSync(link);
  } catch {
    current = undefined;
  }
  if (current === info.libDir) return;
  // Made beside and renamed over: processes loading for the first time at once (jest workers after an install
  // with --ignore-scripts) never see the link missing, or fail on each other's.
  const made = `${link}.tmp-${process.pid}`;
  fs.rmSync(made, { force: true });
  fs.symlinkSync(info.libDir, made);
  fs.renameSync(made, link);
}

/**
 * The libtorch folder an addon loaded from, as a child process saw it (its libc10's folder, from /proc/self/maps);
 * undefined where that cannot be read.
 */
const loadedFromScript = (file: string) =>
  `require(${JSON.stringify(file)}).doctor();` +
  "const maps = (() => { try { return require('fs').readFileSync('/proc/self/maps', 'utf8'); } catch { return ''; } })();" +
  "const line = maps.split('\\n').find((l) => /\\/libc10\\.so/.test(l));" +
  "if (line) process.stdout.write(require('path').dirname(line.slice(line.indexOf('/'))));";

/** Whether two paths name one folder (through links). */
export function sameFolder(a: string, b: string): boolean {
  const real = (dir: string) => {
    try {
      return fs.realpathSync(dir);
    } catch {
      return path.resolve(dir);
    }
  };
  return real(a) === real(b);
}

/**
 * Where a test-loaded addon took libtorch from, when that is not `libDir` (LD_LIBRARY_PATH is searched before the
 * addon's own RUNPATH): a warning for the install to print, since the binary then runs against another libtorch.
 */
export function loadedElsewhere(loaded: string | undefined, libDir: string): string | undefined {
  if (!loaded || sameFolder(loaded, libDir)) return undefined;
  return (
    `it loaded libtorch from ${loaded}, not the libtorch found (${libDir})` +
    (process.env.LD_LIBRARY_PATH
      ? `: LD_LIBRARY_PATH (${process.env.LD_LIBRARY_PATH}) comes first; unset it, or point it at the libtorch found`
      : '')
  );
}

/**
 * Loads an addon in a child process, so a crash or a missing symbol cannot take this process down: why it failed
 * (undefined when it loaded), and the libtorch folder it loaded from (undefined where that cannot be read).
 */
export function testLoadFrom(file: string): { failed?: string; loadedFrom?: string } {
  const run = spawnSync(process.execPath, ['-e', loadedFromScript(file)], {
    encoding: 'utf8',
    timeout: 120_000,
    // As the addon is loaded for real (the user's settings win); in Electron, its binary run as Node.
    env: { ...addonLoadEnvironment, ...process.env, ...(process.versions.electron && { ELECTRON_RUN_AS_NODE: '1' }) },
  });
  if (run.status === 0) return { loadedFrom: run.stdout?.trim() || undefined };
  const ended = run.signal ? `killed by ${run.signal}` : `exit status ${run.status}`;
  const reason = (run.stderr || run.error?.message || ended).trim().split('\n');
  const line = reason.find((text) => /Error|error:/.test(text)) ?? reason[0];
  return { failed: run.signal && !line.includes(run.signal) ? `${line} (${ended})` : line };
}

/** Why an addon fails to load in a child process, or undefined when it loads. */
export function testLoad(file: string): string | undefined {
  return testLoadFrom(file).failed;
}

/** The outcome of choosing a binary: the one to use (if any) and why each other one was passed over. */
export interface BinaryChoice {
  chosen?: BinaryPackage;
  skipped: { name: string; reason: string }[];
  /** About the chosen one: it loaded another libtorch than the one found. */
  warning?: string;
}

/** Picks the first binary package that matches the libtorch and passes its test-load (its link made first). */
export function chooseBinary(
  packages: BinaryPackage[],
  info: LibtorchInfo,
  napiVersion: number,
  packageVersion: string,
): BinaryChoice {
  const skipped: BinaryChoice['skipped'] = [];
  const preferred = binaryPackageName(info);
  const ordered = [...packages].sort((a, b) => Number(b.name === preferred) - Number(a.name === preferred));
  for (const binary of ordered) {
    const wrong = mismatch(binary, info, napiVersion, packageVersion);
    if (wrong) {
      skipped.push({ name: binary.name, reason: wrong });
      continue;
    }
    try {
      linkLibtorch(binary, info);
    } catch (error) {
      skipped.push({ name: binary.name, reason: `cannot link its libtorch folder: ${(error as Error).message}` });
      continue;
    }
    const { failed, loadedFrom } = testLoadFrom(path.join(binary.dir, addonFileName));
    if (failed) {
      skipped.push({ name: binary.name, reason: `its test-load failed: ${failed}` });
      continue;
    }
    const warning = loadedElsewhere(loadedFrom, info.libDir);
    return { chosen: binary, skipped, ...(warning && { warning }) };
  }
  return { skipped };
}
