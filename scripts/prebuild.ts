// `npm run prebuild`: builds the addon against the libtorch found here, with RUNPATH $ORIGIN/libtorch so that it
// loads the user's libtorch wherever it lives, and writes an installable binary package for it:
//   prebuilds/<platform>-<arch>-torch<major.minor>-<cpu|cuXYZ>/  (package.json, binary.json, pace_peft.node)
// and its `npm pack` tarball beside it. `npm pack` of the main package then lists it as an optional dependency.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

import { addonFileName, binaryPackageName, type BinaryDescription } from '../lib/install/binaries';
import { describeLibtorch, findLibtorch, libtorchSearchOrder, platformKey } from '../lib/install/libtorch';

const root = path.resolve(__dirname, '..');
const buildDir = path.join(root, 'build-prebuild');
const outputDir = path.join(root, 'build', 'prebuild');

function run(command: string, args: string[], cwd = root): string {
  const result = spawnSync(command, args, { cwd, stdio: ['ignore', 'pipe', 'inherit'], encoding: 'utf8' });
  if (result.status !== 0) throw new Error(`${command} ${args.join(' ')} failed (exit ${result.status})`);
  return result.stdout;
}

function cmakeCacheValue(name: string): string {
  const cache = fs.readFileSync(path.join(buildDir, 'CMakeCache.txt'), 'utf8');
  return new RegExp(`^${name}:[A-Z]+=(.*)$`, 'm').exec(cache)?.[1] ?? '';
}

function main(): void {
  const info = findLibtorch();
  if (!info) throw new Error(`no libtorch found (looked in: ${libtorchSearchOrder})`);
  console.error(`prebuild: ${describeLibtorch(info)}`);
  process.stderr.write(
    run(process.execPath, [
      path.join(root, 'scripts', 'build-native.js'),
      '--out',
      buildDir,
      '--target',
      'pace_peft',
      '--CDPACE_PORTABLE_RPATH=ON',
      `--CDPACE_OUTPUT_DIR=${outputDir}`,
    ]),
  );

  const pkg = JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8')) as {
    version: string;
    license: string;
    engines: Record<string, string>;
    binary: { napi_versions: number[] };
  };
  const name = binaryPackageName(info);
  const [platform, arch] = platformKey().split('-');
  const hasCuda = cmakeCacheValue('PACE_TORCH_HAS_CUDA') === 'ON' || info.variant !== 'cpu';
  const description: BinaryDescription = {
    platform: platformKey(),
    libtorch: { version: info.version, variant: info.variant, cxx11Abi: info.cxx11Abi },
    napiVersion: Math.max(...pkg.binary.napi_versions),
    cudaArchitectures: hasCuda ? cmakeCacheValue('PACE_CUDA_ARCHITECTURES').split(';').filter(Boolean) : [],
    cpuFeatures: ['avx2 (optional: the CPU attention kernels, chosen at run time)'],
    packageVersion: pkg.version,
  };
  const packageDir = path.join(root, 'prebuilds', name.split('/')[1]);
  fs.rmSync(packageDir, { recursive: true, force: true });
  fs.mkdirSync(packageDir, { recursive: true });
  fs.copyFileSync(path.join(outputDir, addonFileName), path.join(packageDir, addonFileName));
  fs.writeFileSync(path.join(packageDir, 'binary.json'), `${JSON.stringify(description, null, 2)}\n`);
  const manifest = {
    name,
    version: pkg.version,
    description: `pace-peft's native addon for ${describeLibtorch(info).replace(/ from .*/, '')} on ${platformKey()}`,
    license: pkg.license,
    os: [platform],
    cpu: [arch],
    ...(platform === 'linux' && { libc: ['glibc'] }),
    engines: pkg.engines,
    files: [addonFileName, 'binary.json'],
  };
  fs.writeFileSync(path.join(packageDir, 'package.json'), `${JSON.stringify(manifest, null, 2)}\n`);
  const tarball = run('npm', ['pack', '--silent', '--pack-destination', path.join(root, 'prebuilds')], packageDir)
    .trim()
    .split('\n')
    .pop();
  console.log(path.join(root, 'prebuilds', tarball ?? ''));
}

main();
