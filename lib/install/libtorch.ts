import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { PaceOptionError } from '../errors';

/** Where a libtorch was found, in the design's search order. */
export type LibtorchSource = 'LIBTORCH' | 'CMAKE_PREFIX_PATH' | 'python3' | 'debian';

/** What a libtorch addon is bound to: a binary built for one of these loads only with the same. */
export interface LibtorchInfo {
  source: LibtorchSource;
  /** Full version from its CMake package (`1.13.0`, `2.11.0`). */
  version: string;
  /** `cpu`, or `cu` + the CUDA version without the dot (`cu130`), or `cuda` when the version is unknown. */
  variant: string;
  /** The libstdc++ ABI it was built with (`_GLIBCXX_USE_CXX11_ABI`). */
  cxx11Abi: 0 | 1;
  /** The folder holding its CMake package (`…/Torch/TorchConfig.cmake` lies below it). */
  cmakePrefix: string;
  /** The folder holding libtorch.so, libc10.so, … */
  libDir: string;
}

/** The part of a version a binary is keyed by: major.minor (patch releases keep the ABI). */
export function torchSeries(version: string): string {
  return version.split('.').slice(0, 2).join('.');
}

const triplets = ['x86_64-linux-gnu', 'aarch64-linux-gnu'];

/** A folder's entries; none where it is missing or unreadable (a prefix laid out otherwise is not a libtorch). */
function namesIn(dir: string): string[] {
  try {
    return fs.readdirSync(dir);
  } catch {
    return [];
  }
}

function readOrEmpty(file: string): string {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch {
    return '';
  }
}

/** The version a libtorch's CMake package folder (`…/Torch`, holding TorchConfig.cmake) declares now. */
export function versionInTorchDir(torchDir: string): string | undefined {
  const versionFile = readOrEmpty(path.join(torchDir, 'TorchConfigVersion.cmake'));
  return /set\(PACKAGE_VERSION "([^"]+)"\)/.exec(versionFile)?.[1];
}

/** The version of the libtorch `info` describes as it is installed now (undefined: its version file is unreadable). */
export function versionNow(info: Pick<LibtorchInfo, 'cmakePrefix'>): string | undefined {
  return [path.join(info.cmakePrefix, 'Torch'), path.join(info.cmakePrefix, 'share', 'cmake', 'Torch')]
    .map(versionInTorchDir)
    .find((version) => version !== undefined);
}

/** Reads a libtorch's identity from its CMake package under `prefix`, or undefined if there is none. */
function describePrefix(
  prefix: string,
  source: LibtorchSource,
  hints: { libDir?: string; cuda?: string | null; cxx11Abi?: boolean } = {},
): LibtorchInfo | undefined {
  const torchDir = [path.join(prefix, 'Torch'), path.join(prefix, 'share', 'cmake', 'Torch')].find((dir) =>
    fs.existsSync(path.join(dir, 'TorchConfig.cmake')),
  );
  if (!torchDir) return undefined;
  const version = versionInTorchDir(torchDir);
  if (!version) return undefined;
  const config = readOrEmpty(path.join(torchDir, 'TorchConfig.cmake'));
  const abiFlag = /_GLIBCXX_USE_CXX11_ABI=([01])/.exec(config)?.[1];
  const cxx11Abi = hints.cxx11Abi !== undefined ? (hints.cxx11Abi ? 1 : 0) : abiFlag === '0' ? 0 : 1;
  const libDir =
    hints.libDir ??
    [path.resolve(torchDir, '..', '..', '..', 'lib'), path.resolve(torchDir, '..', '..')].find((dir) =>
      namesIn(dir).some((name) => /^libc10\.so/.test(name)),
    );
  if (!libDir) return undefined;
  const hasCuda = namesIn(libDir).some((name) => /^libtorch_cuda\.so/.test(name));
  let variant = 'cpu';
  if (hasCuda) {
    // An unpacked libtorch's build-version ("2.11.0+cu130"), or a pip wheel's torch/version.py
    // (`__version__ = '2.5.1+cu124'`), found beside lib/ when torch is reached through CMAKE_PREFIX_PATH.
    const fromFile = ['build-version', 'version.py']
      .map((name) => /\+cu(\d+)/.exec(readOrEmpty(path.resolve(libDir, '..', name)))?.[1])
      .find((cuda) => cuda);
    const cuda = hints.cuda ? hints.cuda.replace('.', '') : fromFile;
    variant = cuda ? `cu${cuda}` : 'cuda';
  }
  return { source, version, variant, cxx11Abi, cmakePrefix: prefix, libDir };
}

/**
 * The libtorch `info` describes, read again as it is installed now (a `pip install torch` of another variant in
 * place keeps its folders and version, not its CUDA); undefined where it can no longer be read.
 */
export function describeNow(info: LibtorchInfo): LibtorchInfo | undefined {
  return describePrefix(info.cmakePrefix, info.source, { libDir: info.libDir, cxx11Abi: info.cxx11Abi === 1 });
}

/** The libtorch whose CMake package folder (`…/Torch`) is `torchDir`, as a source build records it. */
export function libtorchOfTorchDir(torchDir: string, source: LibtorchSource): LibtorchInfo | undefined {
  return describePrefix(path.dirname(torchDir), source);
}

let pythonFailure: string | undefined;

/** Why the last look at python3's torch found none, when python3 ran and said so (its last line of stderr). */
export function pythonTorchFailure(): string | undefined {
  return pythonFailure;
}

/**
 * The torch of `python3` (found on env's PATH, importing with env's PYTHONPATH, as the build's python3 does), if it
 * imports and ships its CMake package (Debian's python3-torch does not).
 */
function fromPython(env: NodeJS.ProcessEnv): LibtorchInfo | undefined {
  pythonFailure = undefined;
  const script = [
    // `python3 -c` puts the working folder first on sys.path: a json.py or torch/ there must not be imported.
    "import sys; sys.path[:] = [p for p in sys.path if p not in ('', '.')]",
    'import json, os, torch, torch.utils',
    'print(json.dumps({"prefix": torch.utils.cmake_prefix_path,',
    ' "lib": os.path.join(os.path.dirname(torch.__file__), "lib"),',
    ' "cuda": torch.version.cuda, "abi": bool(torch._C._GLIBCXX_USE_CXX11_ABI)}))',
  ].join('\n');
  const run = spawnSync('python3', ['-c', script], { encoding: 'utf8', timeout: 120_000, env });
  if (run.status !== 0 || !run.stdout) {
    // python3 itself missing is no news; a torch that would not import is (a missing CUDA library, say).
    const reason = (run.stderr ?? '').trim().split('\n').pop();
    if (run.error === undefined && reason) pythonFailure = reason;
    return undefined;
  }
  try {
    const found = JSON.parse(run.stdout.trim().split('\n').pop() ?? '') as {
      prefix: string;
      lib: string;
      cuda: string | null;
      abi: boolean;
    };
    if (!fs.existsSync(found.lib)) return undefined;
    return describePrefix(found.prefix, 'python3', { libDir: found.lib, cuda: found.cuda, cxx11Abi: found.abi });
  } catch {
    return undefined;
  }
}

/**
 * The folder LIBTORCH names, if set: npm runs install scripts in the package's folder, so a relative LIBTORCH
 * means the folder npm was run in. (scripts/build-native.js, which runs before dist/ exists, resolves it alike.)
 */
export function namedLibtorch(env: NodeJS.ProcessEnv = process.env): string | undefined {
  return env.LIBTORCH ? path.resolve(env.INIT_CWD ?? process.cwd(), env.LIBTORCH) : undefined;
}

/**
 * Finds libtorch in the order the build uses (cmake/PaceFindTorch.cmake): `LIBTORCH`, then `CMAKE_PREFIX_PATH`,
 * then the torch of `python3`, then Debian's libtorch-dev. Undefined when there is none.
 */
export function findLibtorch(env: NodeJS.ProcessEnv = process.env): LibtorchInfo | undefined {
  const root = namedLibtorch(env);
  if (root) {
    const found = describePrefix(path.join(root, 'share', 'cmake'), 'LIBTORCH') ?? describePrefix(root, 'LIBTORCH');
    if (found) return found;
    // Named by the user: another libtorch found instead would be used without a word.
    throw new PaceOptionError(
      `LIBTORCH=${env.LIBTORCH} holds no libtorch${root === env.LIBTORCH ? '' : ` (${root})`}: expected an ` +
        `unpacked libtorch with share/cmake/Torch/TorchConfig.cmake and lib/libc10.so under it (unset LIBTORCH ` +
        `to search elsewhere)`,
    );
  }
  for (const prefix of (env.CMAKE_PREFIX_PATH ?? '').split(':').filter(Boolean)) {
    const found =
      describePrefix(prefix, 'CMAKE_PREFIX_PATH') ??
      describePrefix(path.join(prefix, 'share', 'cmake'), 'CMAKE_PREFIX_PATH');
    if (found) return found;
  }
  const python = fromPython(env);
  if (python) return python;
  for (const triplet of triplets) {
    const found = describePrefix(`/usr/lib/${triplet}/cmake`, 'debian', { libDir: `/usr/lib/${triplet}` });
    if (found) return found;
  }
  return undefined;
}

/** The places {@link findLibtorch} looks, for error messages. */
export const libtorchSearchOrder =
  "LIBTORCH (an unpacked libtorch), CMAKE_PREFIX_PATH, the torch package of python3, Debian's libtorch-dev";

/** One line naming a libtorch: `libtorch 1.13.0 (cpu, C++11 ABI) from debian at /usr/lib/x86_64-linux-gnu`. */
export function describeLibtorch(info: LibtorchInfo): string {
  return `libtorch ${info.version} (${info.variant}, ${info.cxx11Abi ? 'C++11' : 'pre-C++11'} ABI) from ${info.source} at ${info.libDir}`;
}

/** This machine's platform key for binary packages: `linux-x64`. */
export function platformKey(): string {
  return `${os.platform()}-${os.arch()}`;
}
