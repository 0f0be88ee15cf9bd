// How an installed package finds its libtorch and its addon, without installing anything (install.test.ts packs
// and installs for real): each case here is a folder laid out as a user's machine or package would be.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

import {
  binaryPackageName,
  findBinaryPackages,
  loadedElsewhere,
  mismatch,
  testLoad,
  testLoadFrom,
  type BinaryPackage,
} from '../lib/install/binaries';
import { noAddonMessage } from '../lib/install/addon-location';
import { findLibtorch, type LibtorchInfo } from '../lib/install/libtorch';
import { makeTempDir, repoRoot } from './support/paths';
import { testIf } from './support/test-if';

const temp = makeTempDir('install-choice');
afterAll(() => temp.cleanup());

const version = (JSON.parse(fs.readFileSync(path.join(repoRoot, 'package.json'), 'utf8')) as { version: string })
  .version;
const debian = findLibtorch({ PATH: process.env.PATH });

/** Writes a package folder's record of an install's choice: the binary package in `binaryDir`, for `libtorch`. */
function recordChoiceIn(root: string, binaryDir: string, libtorch: unknown): void {
  fs.writeFileSync(
    path.join(root, 'build', 'binary.json'),
    JSON.stringify({
      file: path.join(binaryDir, 'pace_peft.node'),
      reason: 'prebuilt @pace-peft/some-build',
      package: '@pace-peft/some-build',
      libtorch,
    }),
  );
}

testIf(debian?.source === 'debian', "Debian's libtorch-dev is not the libtorch found first here")(
  "Debian's CMake prefix given as CMAKE_PREFIX_PATH, laid out otherwise than an unpacked libtorch, is found",
  () => {
    // Bug: a prefix whose ../../../lib is missing (Debian's /usr/lib/x86_64-linux-gnu/cmake) threw ENOENT out of
    // the install and every first load.
    const prefix = path.join(path.dirname(debian!.libDir), path.basename(debian!.libDir), 'cmake');
    expect(findLibtorch({ CMAKE_PREFIX_PATH: prefix })).toMatchObject({ version: debian!.version });
  },
);

test('a LIBTORCH without a libtorch is an error, naming it', () => {
  // Bug: a LIBTORCH naming no libtorch was passed over without a word, and another one used.
  expect(() => findLibtorch({ LIBTORCH: path.join(temp.dir, 'libtorch-typo') })).toThrow(
    `LIBTORCH=${path.join(temp.dir, 'libtorch-typo')} holds no libtorch`,
  );
});

/** A pip wheel's torch folder under `dir`: share/cmake/Torch (its version and CMake flags) and lib/ (`libs`). */
function fakeTorchPackage(dir: string, version: string, torchConfig: string, libs: string[]): string {
  const torch = path.join(temp.dir, dir, 'torch');
  const cmake = path.join(torch, 'share', 'cmake', 'Torch');
  fs.mkdirSync(cmake, { recursive: true });
  fs.mkdirSync(path.join(torch, 'lib'), { recursive: true });
  fs.writeFileSync(path.join(cmake, 'TorchConfigVersion.cmake'), `set(PACKAGE_VERSION "${version}")\n`);
  fs.writeFileSync(path.join(cmake, 'TorchConfig.cmake'), torchConfig);
  for (const lib of libs) fs.writeFileSync(path.join(torch, 'lib', lib), '');
  return torch;
}

test('a pip CUDA torch reached through CMAKE_PREFIX_PATH is its cuXYZ variant, read from its version.py', () => {
  // Bug: only an unpacked libtorch's build-version was read, so a wheel's torch (torch/share/cmake, torch/lib,
  // torch/version.py) found this way was variant 'cuda', and the cu124 binary made for it was passed over.
  const torch = fakeTorchPackage('site-packages', '2.5.1', 'set(TORCH_CXX_FLAGS "-D_GLIBCXX_USE_CXX11_ABI=0")\n', [
    'libc10.so',
    'libtorch_cuda.so',
  ]);
  fs.writeFileSync(path.join(torch, 'version.py'), "__version__ = '2.5.1+cu124'\ncuda: Optional[str] = '12.4'\n");
  const found = findLibtorch({ CMAKE_PREFIX_PATH: path.join(torch, 'share', 'cmake') });
  expect(found).toMatchObject({ version: '2.5.1', variant: 'cu124', cxx11Abi: 0 });
});

test("the python3 asked about torch is the one on the given environment's PATH", () => {
  // Bug: findLibtorch(env) ran the python3 of the process's own PATH, whatever env said.
  const torch = fakeTorchPackage('env-python', '2.6.0', '', ['libc10.so']);
  const bin = path.join(temp.dir, 'env-python', 'bin');
  fs.mkdirSync(bin);
  const answer = { prefix: path.join(torch, 'share', 'cmake'), lib: path.join(torch, 'lib'), cuda: null, abi: true };
  fs.writeFileSync(path.join(bin, 'python3'), `#!/bin/sh\necho '${JSON.stringify(answer)}'\n`, { mode: 0o755 });
  expect(findLibtorch({ PATH: `${bin}:${process.env.PATH}` })).toMatchObject({
    source: 'python3',
    version: '2.6.0',
    variant: 'cpu',
    libDir: path.join(torch, 'lib'),
  });
});

test('a binary built from another pace-peft version is not used; a test-load killed by a signal says so', () => {
  const info = debian as LibtorchInfo;
  const binary: BinaryPackage = {
    name: binaryPackageName(info),
    dir: temp.dir,
    description: {
      platform: `${process.platform}-${process.arch}`,
      libtorch: { version: info.version, variant: info.variant, cxx11Abi: info.cxx11Abi },
      napiVersion: 8,
      cudaArchitectures: [],
      cpuFeatures: [],
      packageVersion: '0.0.1',
    },
  };
  expect(mismatch(binary, info, 8, version)).toBe(`it is built from pace-peft 0.0.1, this is pace-peft ${version}`);
  expect(
    mismatch({ ...binary, description: { ...binary.description!, packageVersion: version } }, info, 8, version),
  ).toBeUndefined();
  // A package whose binary.json describes another is refused (renamed, or planted under a plausible name).
  expect(
    mismatch(
      {
        ...binary,
        name: '@pace-peft/linux-x64-torch9.9-cpu',
        description: { ...binary.description!, packageVersion: version },
      },
      info,
      8,
      version,
    ),
  ).toBe(`its binary.json describes ${binaryPackageName(info)}, not this package`);
  // Only packages named as binaries for this platform are considered (each is test-loaded: its code runs).
  const tree = path.join(temp.dir, 'scope-tree');
  const here = `${process.platform}-${process.arch}`;
  const entries = ['evil', `${here}-torch2.5-cpu`, `${here}-torch2.5-cu124-precxx11`, `${here}-torch2.5-cpu-abi0`];
  for (const entry of [...entries, 'other-os-x64-torch2.5-cpu']) {
    fs.mkdirSync(path.join(tree, 'node_modules', '@pace-peft', entry), { recursive: true });
    fs.writeFileSync(path.join(tree, 'node_modules', '@pace-peft', entry, 'package.json'), '{}');
  }
  expect(findBinaryPackages(path.join(tree, 'project')).map((found) => found.name)).toEqual([
    `@pace-peft/${here}-torch2.5-cpu`,
    `@pace-peft/${here}-torch2.5-cu124-precxx11`,
  ]);
  // Builds for the two C++ ABIs of one series have their own names (pip's torch before 2.7 has the old one).
  expect(binaryPackageName({ version: '2.5.1', variant: 'cu124', cxx11Abi: 0 }, 'linux-x64')).toBe(
    '@pace-peft/linux-x64-torch2.5-cu124-precxx11',
  );
  expect(binaryPackageName({ version: '2.5.1', variant: 'cu124', cxx11Abi: 1 }, 'linux-x64')).toBe(
    '@pace-peft/linux-x64-torch2.5-cu124',
  );
  // Bug: the reason read "exit status null".
  const dying = path.join(temp.dir, 'dying.js');
  fs.writeFileSync(dying, "process.kill(process.pid, 'SIGKILL');");
  expect(testLoad(dying)).toBe('killed by SIGKILL');
});

test('of a source build and a recorded prebuilt binary, the one made last is loaded', () => {
  // Bug: an old source build always won, so an install that chose (and announced) a prebuilt still loaded it.
  const root = path.join(temp.dir, 'package');
  fs.mkdirSync(path.join(root, 'build', 'Release'), { recursive: true });
  fs.cpSync(path.join(repoRoot, 'dist'), path.join(root, 'dist'), { recursive: true });
  fs.copyFileSync(path.join(repoRoot, 'package.json'), path.join(root, 'package.json'));
  const binaryDir = path.join(root, 'node_modules', '@pace-peft', 'some-build');
  fs.mkdirSync(binaryDir, { recursive: true });
  fs.writeFileSync(path.join(binaryDir, 'pace_peft.node'), 'prebuilt');
  fs.writeFileSync(path.join(binaryDir, 'binary.json'), JSON.stringify({ packageVersion: version }));
  const source = path.join(root, 'build', 'Release', 'pace_peft.node');
  const record = path.join(root, 'build', 'binary.json');
  fs.writeFileSync(source, 'source build');
  const recordChoice = () => recordChoiceIn(root, binaryDir, debian);
  const located = () =>
    spawnSync(
      process.execPath,
      [
        '-e',
        `console.log(require(${JSON.stringify(path.join(root, 'dist', 'install', 'addon-location.js'))}).locateAddon().reason)`,
      ],
      { encoding: 'utf8' },
    ).stdout.trim();
  const at = (file: string, seconds: number) => fs.utimesSync(file, seconds, seconds);
  recordChoice();
  at(source, 1_000_000);
  at(record, 2_000_000);
  expect(located()).toBe('prebuilt @pace-peft/some-build');
  at(source, 3_000_000); // built again after the install
  expect(located()).toBe('built from source (build/Release)');
  // a record of a binary built from another version is passed over
  at(source, 1_000_000);
  fs.writeFileSync(path.join(binaryDir, 'binary.json'), JSON.stringify({ packageVersion: '0.0.1' }));
  expect(located()).toBe('built from source (build/Release)');
});

test("a recorded binary whose libtorch was upgraded in place is chosen again; a source build's is refused, naming it", () => {
  // Bugs: after `pip install -U torch` both loaded against the new libtorch and ended the process at the first
  // missing symbol, with no word of why.
  const root = path.join(temp.dir, 'upgraded');
  fs.mkdirSync(path.join(root, 'build', 'Release'), { recursive: true });
  fs.cpSync(path.join(repoRoot, 'dist'), path.join(root, 'dist'), { recursive: true });
  fs.copyFileSync(path.join(repoRoot, 'package.json'), path.join(root, 'package.json'));
  const torchDir = path.join(temp.dir, 'upgraded-torch', 'share', 'cmake', 'Torch');
  const libDir = path.join(temp.dir, 'upgraded-torch', 'lib');
  fs.mkdirSync(torchDir, { recursive: true });
  fs.mkdirSync(libDir, { recursive: true });
  const installVersion = (v: string) =>
    fs.writeFileSync(path.join(torchDir, 'TorchConfigVersion.cmake'), `set(PACKAGE_VERSION "${v}")\n`);
  installVersion('2.5.1');
  fs.writeFileSync(path.join(torchDir, 'TorchConfig.cmake'), '\n');
  fs.writeFileSync(path.join(libDir, 'libc10.so'), '');
  const binaryDir = path.join(root, 'node_modules', '@pace-peft', 'some-build');
  fs.mkdirSync(binaryDir, { recursive: true });
  fs.writeFileSync(path.join(binaryDir, 'pace_peft.node'), 'prebuilt');
  fs.writeFileSync(path.join(binaryDir, 'binary.json'), JSON.stringify({ packageVersion: version }));
  const cmakePrefix = path.dirname(torchDir);
  recordChoiceIn(root, binaryDir, {
    source: 'LIBTORCH',
    version: '2.5.1',
    variant: 'cpu',
    cxx11Abi: 1,
    cmakePrefix,
    libDir,
  });
  const located = () =>
    spawnSync(
      process.execPath,
      [
        '-e',
        `try { console.log(require(${JSON.stringify(path.join(root, 'dist', 'install', 'addon-location.js'))}).locateAddon().reason) } catch (e) { console.log(e.message) }`,
      ],
      { encoding: 'utf8', env: { ...process.env, LIBTORCH: path.join(temp.dir, 'upgraded-torch') } },
    ).stdout.trim();
  expect(located()).toBe('prebuilt @pace-peft/some-build');
  installVersion('2.6.0'); // no binary for it here: the search says what it found
  expect(located()).toMatch(/^pace-peft: no native addon for this machine\.\nFound libtorch 2\.6\.0/);
  // A source build records its libtorch beside it (CMakeLists.txt), and loading holds it to that version.
  fs.rmSync(path.join(root, 'build', 'binary.json'));
  fs.writeFileSync(path.join(root, 'build', 'Release', 'pace_peft.node'), 'source build');
  fs.writeFileSync(
    path.join(root, 'build', 'Release', 'libtorch.json'),
    JSON.stringify({ version: '2.5.1', torchDir }),
  );
  expect(located()).toBe(
    `pace-peft: the addon in build/Release was built against libtorch 2.5.1 (${torchDir}), which is now 2.6.0; ` +
      'rebuild it: `PACE_BUILD_FROM_SOURCE=1 npm rebuild pace-peft` (in a checkout: `npm run build:native`)',
  );
  // A patch release keeps the series (what binaries are keyed by); a version that cannot be read (libtorch-dev
  // purged after the build, the libraries kept) is not held against it.
  installVersion('2.5.2');
  expect(located()).toBe('built from source (build/Release)');
  fs.rmSync(torchDir, { recursive: true });
  expect(located()).toBe('built from source (build/Release)');
  // The checkout's own build carries the record, and it matches.
  const own = JSON.parse(fs.readFileSync(path.join(repoRoot, 'build', 'Release', 'libtorch.json'), 'utf8'));
  expect(fs.readFileSync(path.join(own.torchDir, 'TorchConfigVersion.cmake'), 'utf8')).toContain(`"${own.version}"`);
});

describe('a recorded choice whose libtorch changed since the install', () => {
  // A package folder with a recorded binary, and fake libtorches laid out as unpacked ones.
  const root = path.join(temp.dir, 'changed');
  const binaryDir = path.join(root, 'node_modules', '@pace-peft', 'some-build');
  const fakeLibtorch = (name: string, cuda?: string) => {
    const prefix = path.join(temp.dir, name);
    const torchDir = path.join(prefix, 'share', 'cmake', 'Torch');
    fs.mkdirSync(torchDir, { recursive: true });
    fs.mkdirSync(path.join(prefix, 'lib'), { recursive: true });
    fs.writeFileSync(path.join(torchDir, 'TorchConfigVersion.cmake'), 'set(PACKAGE_VERSION "2.5.1")\n');
    fs.writeFileSync(path.join(torchDir, 'TorchConfig.cmake'), '\n');
    fs.writeFileSync(path.join(prefix, 'lib', 'libc10.so'), '');
    if (cuda) {
      fs.writeFileSync(path.join(prefix, 'lib', 'libtorch_cuda.so'), '');
      fs.writeFileSync(path.join(prefix, 'build-version'), `2.5.1+${cuda}\n`);
    }
    return { prefix, torchDir, libDir: path.join(prefix, 'lib'), cmakePrefix: path.dirname(torchDir) };
  };
  const record = (torch: ReturnType<typeof fakeLibtorch>, variant: string) =>
    recordChoiceIn(root, binaryDir, { source: 'LIBTORCH', version: '2.5.1', variant, cxx11Abi: 1, ...torch });
  const located = (env: NodeJS.ProcessEnv = {}) => {
    const script = `try { console.log(require(${JSON.stringify(path.join(root, 'dist', 'install', 'addon-location.js'))}).locateAddon().reason) } catch (e) { console.log(e.message) }`;
    const inherited: NodeJS.ProcessEnv = { ...process.env, PATH: '' }; // (no python3: nothing else is found when choosing again)
    delete inherited.LIBTORCH;
    return spawnSync(process.execPath, ['-e', script], {
      encoding: 'utf8',
      env: { ...inherited, ...env },
    }).stdout.trim();
  };
  beforeAll(() => {
    fs.mkdirSync(path.join(root, 'build', 'Release'), { recursive: true });
    fs.cpSync(path.join(repoRoot, 'dist'), path.join(root, 'dist'), { recursive: true });
    fs.copyFileSync(path.join(repoRoot, 'package.json'), path.join(root, 'package.json'));
    fs.mkdirSync(binaryDir, { recursive: true });
    fs.writeFileSync(path.join(binaryDir, 'pace_peft.node'), 'prebuilt');
    fs.writeFileSync(path.join(binaryDir, 'binary.json'), JSON.stringify({ packageVersion: version }));
  });

  test('a CUDA wheel replaced by the CPU one of the same version (or the reverse) is chosen for again', () => {
    // Bug: the version alone was checked, so the CUDA binary went on loading against a CPU libtorch (failing on
    // libtorch_cuda.so) and the CPU binary against a CUDA one (no word that CUDA went unused).
    const torch = fakeLibtorch('wheel', 'cu124');
    record(torch, 'cu124');
    expect(located()).toBe('prebuilt @pace-peft/some-build');
    fs.rmSync(path.join(torch.libDir, 'libtorch_cuda.so')); // the CPU wheel, installed over it
    // chosen again: with PATH empty no libtorch is found here, which the search then says
    expect(located()).toMatch(/^pace-peft: no native addon for this machine\./);
    record(torch, 'cpu');
    expect(located()).toBe('prebuilt @pace-peft/some-build');
    fs.writeFileSync(path.join(torch.libDir, 'libtorch_cuda.so'), ''); // and the CUDA wheel over that
    expect(located()).toMatch(/^pace-peft: no native addon for this machine\./);
    record(torch, 'cu121'); // another CUDA: binaries are keyed by it
    expect(located()).toMatch(/^pace-peft: no native addon for this machine\./);
  });

  test('a LIBTORCH set after the install, naming another libtorch, is refused, naming both, not passed over', () => {
    // Bug: the addon chosen at install went on loading its own libtorch, LIBTORCH ignored without a word.
    const installed = fakeLibtorch('installed');
    const other = fakeLibtorch('other-torch', 'cu124');
    record(installed, 'cpu');
    expect(located({ LIBTORCH: installed.prefix })).toBe('prebuilt @pace-peft/some-build');
    expect(located({ LIBTORCH: other.prefix })).toBe(
      `pace-peft: LIBTORCH names libtorch 2.5.1 (cu124, C++11 ABI) from LIBTORCH at ${other.libDir}, but ` +
        `@pace-peft/some-build uses the libtorch at ${installed.libDir}; to use the one LIBTORCH names, choose ` +
        'again: `npm rebuild pace-peft` with LIBTORCH set, or unset LIBTORCH',
    );
    expect(located({ LIBTORCH: path.join(temp.dir, 'no-such-torch') })).toContain('holds no libtorch');
    // A source build is held to LIBTORCH alike.
    fs.rmSync(path.join(root, 'build', 'binary.json'));
    fs.writeFileSync(path.join(root, 'build', 'Release', 'pace_peft.node'), 'source build');
    fs.writeFileSync(
      path.join(root, 'build', 'Release', 'libtorch.json'),
      JSON.stringify({ version: '2.5.1', torchDir: installed.torchDir }),
    );
    expect(located({ LIBTORCH: installed.prefix })).toBe('built from source (build/Release)');
    expect(located()).toBe('built from source (build/Release)');
    expect(located({ LIBTORCH: other.prefix })).toMatch(
      new RegExp(
        `^pace-peft: LIBTORCH names libtorch 2\\.5\\.1 .* at ${other.libDir}, but the addon in build/Release uses the libtorch at ${installed.libDir}; to use the one LIBTORCH names, rebuild it: `,
      ),
    );
  });
});

test('PACE_BUILD_FROM_SOURCE=1 with a LIBTORCH that does not exist fails before building, naming it', () => {
  // Bug: the forced source build skipped the check, and CMake went on to another libtorch without a word (CMake now
  // looks in a LIBTORCH only). Run from a copy of the package without its build script: a regression fails there.
  const root = path.join(temp.dir, 'forced');
  fs.mkdirSync(root, { recursive: true });
  fs.cpSync(path.join(repoRoot, 'dist'), path.join(root, 'dist'), { recursive: true });
  fs.copyFileSync(path.join(repoRoot, 'package.json'), path.join(root, 'package.json'));
  const install = (env: NodeJS.ProcessEnv) =>
    spawnSync(
      process.execPath,
      [
        '-e',
        `process.exitCode = require(${JSON.stringify(path.join(root, 'dist', 'install', 'install.js'))}).runInstall()`,
      ],
      { encoding: 'utf8', env: { ...process.env, PACE_BUILD_FROM_SOURCE: '1', ...env } },
    );
  const typo = path.join(temp.dir, 'libtroch');
  const run = install({ LIBTORCH: typo });
  expect(run.status).toBe(1);
  expect(run.stderr).toContain(`pace-peft: LIBTORCH=${typo} does not exist (${typo})`);
  expect(run.stderr).not.toContain('building the addon from source');
  // a relative LIBTORCH is the folder npm was run in (INIT_CWD), not the package's
  const relative = install({ LIBTORCH: 'libtroch', INIT_CWD: temp.dir });
  expect(relative.stderr).toContain(`pace-peft: LIBTORCH=libtroch does not exist (${typo})`);
});

test('a CXX that cannot run counts as no compiler: the install says so rather than failing in CMake', () => {
  // Bug: any c++ on the PATH counted, though CMake builds with CXX when it is set (and a file that cannot run counted).
  const run = spawnSync(
    process.execPath,
    [
      '-e',
      `process.exitCode = require(${JSON.stringify(path.join(repoRoot, 'dist', 'install', 'install.js'))}).runInstall()`,
    ],
    { encoding: 'utf8', env: { ...process.env, CXX: path.join(temp.dir, 'no-such-g++') } },
  );
  expect(run.status).toBe(1);
  expect(run.stderr).toContain(`and no CXX=${path.join(temp.dir, 'no-such-g++')} to build one`);
});

test('a test-load that took libtorch from another folder (LD_LIBRARY_PATH first) is found out, naming both', () => {
  // An addon's RUNPATH yields to LD_LIBRARY_PATH: the chosen binary would then run against another libtorch.
  const addon = path.join(repoRoot, 'build', 'Release', 'pace_peft.node');
  const own = testLoadFrom(addon);
  expect(own.failed).toBeUndefined();
  expect(fs.realpathSync(own.loadedFrom!)).toBe(fs.realpathSync(debian!.libDir));
  expect(loadedElsewhere(own.loadedFrom, debian!.libDir)).toBeUndefined();
  // A copy of libc10 in a folder LD_LIBRARY_PATH names is the one loaded.
  const other = path.join(temp.dir, 'other-libtorch');
  fs.mkdirSync(other, { recursive: true });
  const c10 = fs.realpathSync(path.join(debian!.libDir, 'libc10.so'));
  fs.copyFileSync(c10, path.join(other, path.basename(fs.readlinkSync(path.join(debian!.libDir, 'libc10.so')))));
  const saved = process.env.LD_LIBRARY_PATH;
  process.env.LD_LIBRARY_PATH = other;
  try {
    const elsewhere = testLoadFrom(addon);
    expect(elsewhere.loadedFrom).toBe(other);
    expect(loadedElsewhere(elsewhere.loadedFrom, debian!.libDir)).toBe(
      `it loaded libtorch from ${other}, not the libtorch found (${debian!.libDir}): LD_LIBRARY_PATH (${other}) ` +
        'comes first; unset it, or point it at the libtorch found',
    );
  } finally {
    if (saved === undefined) delete process.env.LD_LIBRARY_PATH;
    else process.env.LD_LIBRARY_PATH = saved;
  }
});

test('an addon that fails to load against a libtorch on LD_LIBRARY_PATH is told so, not to reinstall libtorch', () => {
  // Bug: the hint was "the libtorch it was built against is not where it was: reinstall it", which cannot help
  // while LD_LIBRARY_PATH (another torch's lib folder, from conda or a CUDA setup script) comes first.
  const own = testLoadFrom(path.join(repoRoot, 'build', 'Release', 'pace_peft.node')).loadedFrom;
  expect(own).toBeDefined();
  const foreign = path.join(temp.dir, 'foreign-libtorch');
  fs.mkdirSync(foreign, { recursive: true });
  const stub = path.join(foreign, 'stub.c');
  fs.writeFileSync(stub, 'void not_c10(void) {}\n');
  const names = fs.readdirSync(own!).filter((name) => /^libc10\.so/.test(name)); // a libc10 without c10's symbols
  for (const name of names) {
    const compiled = spawnSync('cc', ['-shared', '-fPIC', stub, '-o', path.join(foreign, name)], { encoding: 'utf8' });
    expect(compiled.stderr).toBe('');
  }
  const script = `try { require(${JSON.stringify(path.join(repoRoot, 'dist', 'native.js'))}).nativeAddon(); console.log('loaded') } catch (e) { console.log(e.message) }`;
  // The addon's own libtorch folder on LD_LIBRARY_PATH too is not named: it is not the one in the way.
  const run = spawnSync(process.execPath, ['-e', script], {
    encoding: 'utf8',
    env: { ...process.env, LD_LIBRARY_PATH: `${foreign}:${own}` },
  });
  expect(run.stdout).toMatch(/undefined symbol/);
  expect(run.stdout.trim()).toMatch(
    new RegExp(
      `LD_LIBRARY_PATH, searched before the addon's own libtorch, holds a libtorch in ${foreign}: unset ` +
        'LD_LIBRARY_PATH, or leave that folder out of it\\.$',
    ),
  );
});

test('a pack that failed after adding the binary packages does not make them part of the committed manifest', () => {
  // Bug: the next pack's `add` kept the modified package.json as the committed one, and `restore` put it back.
  const root = path.join(temp.dir, 'checkout');
  fs.mkdirSync(path.join(root, 'scripts'), { recursive: true });
  fs.copyFileSync(path.join(repoRoot, 'scripts', 'pack-manifest.js'), path.join(root, 'scripts', 'pack-manifest.js'));
  const committed = `${JSON.stringify({ name: 'pace-peft', version: '1.2.3' }, null, 2)}\n`;
  fs.writeFileSync(path.join(root, 'package.json'), committed);
  fs.mkdirSync(path.join(root, 'prebuilds', 'x'), { recursive: true });
  fs.writeFileSync(
    path.join(root, 'prebuilds', 'x', 'package.json'),
    JSON.stringify({ name: '@pace-peft/x', version: '1.2.3' }),
  );
  const step = (what: string) =>
    spawnSync(process.execPath, [path.join(root, 'scripts', 'pack-manifest.js'), what], { encoding: 'utf8' }).status;
  expect(step('add')).toBe(0); // then the pack failed: no restore
  expect(JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8')).optionalDependencies).toEqual({
    '@pace-peft/x': '1.2.3',
  });
  expect(step('add')).toBe(0);
  expect(step('restore')).toBe(0);
  expect(fs.readFileSync(path.join(root, 'package.json'), 'utf8')).toBe(committed);
  // A package.json edited after a failed pack is the user's: kept, not replaced by the stale committed copy.
  expect(step('add')).toBe(0); // failed again
  const edited = `${JSON.stringify({ name: 'pace-peft', version: '1.2.4' }, null, 2)}\n`;
  fs.writeFileSync(path.join(root, 'package.json'), edited);
  expect(step('add')).toBe(0); // no prebuild of 1.2.4: nothing added
  expect(step('restore')).toBe(0);
  expect(fs.readFileSync(path.join(root, 'package.json'), 'utf8')).toBe(edited);
});

testIf(spawnSync('python3', ['--version']).status === 0, 'python3 is on the PATH')(
  "python3's torch is looked up without importing the working folder's modules; why it failed is told",
  () => {
    // Bug caught (a review): `python3 -c` put the working folder first on sys.path, so a json.py or torch/ in the
    // folder `node` ran in was imported, its code run; and a torch that would not import became "no libtorch".
    const folder = path.join(temp.dir, 'hostile-cwd');
    const marker = path.join(folder, 'imported');
    fs.mkdirSync(path.join(folder, 'torch'), { recursive: true });
    for (const file of ['json.py', path.join('torch', '__init__.py')]) {
      fs.writeFileSync(path.join(folder, file), `open(${JSON.stringify(marker)}, 'w').write('ran')\n`);
    }
    const before = process.cwd();
    try {
      process.chdir(folder);
      findLibtorch({ PATH: process.env.PATH, PYTHONPATH: '' });
    } finally {
      process.chdir(before);
    }
    expect(fs.existsSync(marker)).toBe(false);

    const bin = path.join(temp.dir, 'broken-python', 'bin');
    fs.mkdirSync(bin, { recursive: true });
    const failing = 'ImportError: libcudnn.so.9: cannot open shared object file: No such file or directory';
    fs.writeFileSync(path.join(bin, 'python3'), `#!/bin/sh\necho 'Traceback' >&2\necho '${failing}' >&2\nexit 1\n`, {
      mode: 0o755,
    });
    expect(findLibtorch({ PATH: bin })?.source).not.toBe('python3');
    expect(noAddonMessage(undefined, undefined)).toContain(`python3 could not import torch: ${failing}`);
  },
);
