import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import {
  createModel,
  cudaMemoryStats,
  doctor,
  formatDoctorReport,
  measureGemm,
  threads,
  type DoctorReport,
} from '../lib';
import { commands } from '../lib/cli/commands';
import { repoRoot } from './support/paths';
import { testIf } from './support/test-if';

const cli = path.join(repoRoot, 'dist', 'cli.js');

function runCli(args: string[], env: NodeJS.ProcessEnv = {}) {
  return spawnSync(process.execPath, [cli, ...args], { encoding: 'utf8', env: { ...process.env, ...env } });
}

test('doctor() reports the libtorch version, CUDA, the BLAS and threads', () => {
  const report = doctor();
  expect(report.torchVersion).toMatch(/^\d+\.\d+\.\d+/);
  expect(report.version).toBe(JSON.parse(fs.readFileSync(path.join(repoRoot, 'package.json'), 'utf8')).version);
  expect(typeof report.cuda.built).toBe('boolean');
  // Without CUDA in the build no GPU can be counted; with it, every /dev/nvidiaN the driver made (unless
  // CUDA_VISIBLE_DEVICES narrows them).
  const gpuNodes = fs.existsSync('/dev') ? fs.readdirSync('/dev').filter((n) => /^nvidia\d+$/.test(n)).length : 0;
  if (!report.cuda.built) expect(report.cuda.deviceCount).toBe(0);
  else if (process.env.CUDA_VISIBLE_DEVICES === undefined) expect(report.cuda.deviceCount).toBe(gpuNodes);
  else expect(report.cuda.deviceCount).toBeLessThanOrEqual(gpuNodes);
  // The setting in force (setThreads, else PACE_NUM_THREADS / OMP_NUM_THREADS, else the CPUs available).
  expect(report.threads.intraOp).toBe(threads().intraOp);
  expect(report.threads.hardware).toBe(os.cpus().length);
  expect(report.threads.available).toBeGreaterThanOrEqual(1);
  expect(report.threads.available).toBeLessThanOrEqual(os.availableParallelism());
  expect(report.parallelInfo).toContain('at::get_num_threads');
  // The addon's own loops (per-sample weights, CPU attention) must get every intra-op thread: built without
  // libtorch's OpenMP they silently ran on one.
  expect(report.threads.coreLoops).toBe(report.threads.intraOp);
  expect(report.warnings.filter((w) => w.includes('OpenMP'))).toEqual([]);
  expect(typeof report.cpuAttentionKernels).toBe('boolean');
  expect(report.addon).toMatch(/pace_peft\.node$/);
  // The bootstrap installs OpenBLAS: the fast BLAS must be the one in use.
  expect(['openblas', 'mkl', 'blis']).toContain(report.blas.kind);
  expect(report.warnings.filter((w) => w.includes('reference'))).toEqual([]);
});

test("the CPU's bf16 units and libtorch's bf16 product path are reported as /proc/cpuinfo and the rates say", async () => {
  const report = doctor();
  const flags = new Set(
    (fs.readFileSync('/proc/cpuinfo', 'utf8').match(/^flags\s*:(.*)$/m)?.[1] ?? '').trim().split(/\s+/),
  );
  expect(report.cpuBf16.units).toBe(flags.has('avx512_bf16') || flags.has('amx_bf16'));
  expect(report.cpuBf16.amx).toBe(flags.has('amx_bf16'));
  const avx512 = ['avx512bw', 'avx512vl', 'avx512dq'].every((flag) => flags.has(flag));
  expect(report.cpuBf16.gemm).toBe(avx512 && report.blas.onednn !== '' ? 'onednn' : 'aten');
  // oneDNN sums bf16 products in float32; libtorch 1.13's own loops sum them in bf16, and bf16 is refused there.
  if (report.cpuBf16.gemm === 'onednn') expect(report.cpuBf16.sumsInFloat).toBe(true);
  else if (report.torchVersion.startsWith('1.')) expect(report.cpuBf16.sumsInFloat).toBe(false);
  expect(report.cpuBf16.reason.includes("precision 'bf16' is refused")).toBe(!report.cpuBf16.sumsInFloat);
  if (report.cpuBf16.gemm !== 'onednn' || !report.cpuBf16.units) return;
  // With bf16 units behind oneDNN, bf16 products outrun float32 ones (about 2.6× on this project's machines);
  // the best of two alternating measurements each, so a neighbour's load hits both.
  const rate = async (dtype: 'float32' | 'bfloat16') => (await measureGemm({ size: 1024, seconds: 0.3, dtype })).gflops;
  const rates = { float32: 0, bfloat16: 0 };
  for (const dtype of ['float32', 'bfloat16', 'float32', 'bfloat16'] as const)
    rates[dtype] = Math.max(rates[dtype], await rate(dtype));
  const { float32: fp32, bfloat16: bf16 } = rates;
  console.log(`GEMM 1024 on the CPU: float32 ${fp32.toFixed(1)} GFLOP/s, bfloat16 ${bf16.toFixed(1)} GFLOP/s`);
  expect(bf16).toBeGreaterThan(fp32);
});

test('cudaMemoryStats follows what tensors hold on a GPU, and is undefined where there is none', async () => {
  expect(() => cudaMemoryStats(-1)).toThrow(/GPU index/);
  const report = doctor();
  expect(cudaMemoryStats(report.cuda.deviceCount)).toBeUndefined(); // one past the last GPU
  if (report.cuda.deviceCount === 0) return expect(cudaMemoryStats()).toBeUndefined();
  const before = cudaMemoryStats(0, { resetPeak: true })!;
  using model = await createModel({ family: 'vit', imgSize: 32, patchSize: 16, embedDim: 64, depth: 1, numHeads: 2 });
  model.to('cuda');
  const after = cudaMemoryStats(0)!;
  // float32 parameters, each allocation rounded up to the allocator's 512-byte blocks
  expect(after.allocatedBytes - before.allocatedBytes).toBeGreaterThanOrEqual(4 * model.numParameters());
  expect(after.peakAllocatedBytes).toBeGreaterThanOrEqual(after.allocatedBytes);
  expect(after.reservedBytes).toBeGreaterThanOrEqual(after.allocatedBytes);
});

test('formatDoctorReport prints one line per fact and every warning', () => {
  const report: DoctorReport = { ...doctor(), warnings: ['something to fix'] };
  const text = formatDoctorReport(report, [
    { size: 64, iterations: 3, seconds: 1, gflops: 12.5, device: 'cpu', dtype: 'float32', threads: 1 },
    { size: 64, iterations: 5, seconds: 1, gflops: 24.0, device: 'cpu', dtype: 'bfloat16', threads: 2 },
  ]);
  expect(text).toContain(`libtorch   ${report.torchVersion}`);
  expect(text).toContain('gemm       12.5 GFLOP/s with 1 thread(s) (64×64 float32 on cpu');
  expect(text).toContain('gemm       24.0 GFLOP/s with 2 thread(s) (64×64 bfloat16 on cpu');
  expect(text).toContain(`cpu bf16   ${report.cpuBf16.units ? 'bf16 units' : 'no bf16 units'}`);
  expect(text).toMatch(/^threads {4}intra-op \d+, inter-op \d+ \(unused\), \d+ CPU\(s\) available of \d+$/m);
  expect(text).toMatch(/^ {11}the addon's own loops: \d+ thread\(s\); CPU attention kernels: (AVX2|none)/m);
  expect(text).toContain('warning    something to fix');
});

test('`pace doctor --json` prints the report as JSON', () => {
  const run = runCli(['doctor', '--json']);
  expect(run.status).toBe(0);
  const parsed = JSON.parse(run.stdout) as DoctorReport;
  expect(parsed.torchVersion).toBe(doctor().torchVersion);
});

test('`pace` without a known command prints usage and exits 2', () => {
  const run = runCli(['frobnicate']);
  expect(run.status).toBe(2);
  expect(run.stderr).toContain("unknown command 'frobnicate'");
  expect(run.stderr).toContain('Usage: pace <command>');
  const bare = runCli([]);
  expect([bare.status, bare.stdout]).toEqual([2, '']);
  expect(bare.stderr).toContain('Usage: pace <command>');
  const help = runCli(['--help']);
  expect([help.status, help.stderr]).toEqual([0, '']);
  expect(help.stdout).toContain('Usage: pace <command>');
  // Bug: six of the nine summaries were cut off mid-sentence (the first line of a wrapped paragraph).
  const listed = help.stdout.split('Commands:\n')[1].trimEnd().split('\n');
  expect(listed).toHaveLength(Object.keys(commands).length);
  for (const [name, command] of Object.entries(commands)) {
    expect(listed).toContain(`  ${name.padEnd(8)}${command.summary}`);
    expect(command.summary).toMatch(/^[A-Z].{20,90}[A-Za-z)]$/); // one whole line, no cut-off sentence
  }
  // `pace help fit` is fit's usage (it printed the list), and an unknown one is refused
  const fit = runCli(['help', 'fit']);
  expect([fit.status, fit.stdout]).toEqual([0, `Usage: ${commands.fit.usage}\n`]);
  const unknown = runCli(['help', 'frobnicate']);
  expect([unknown.status, unknown.stderr.split('\n')[0]]).toEqual([2, "pace: unknown command 'frobnicate'"]);
  // Bug: names every object has were taken for commands ("command.run is not a function"; "Usage: undefined").
  for (const args of [['constructor'], ['help', 'hasOwnProperty']]) {
    const inherited = runCli(args);
    expect([inherited.status, inherited.stderr.split('\n')[0]]).toEqual([2, `pace: unknown command '${args.at(-1)}'`]);
  }
});

testIf(doctor().cuda.deviceCount === 0, 'a GPU is visible')(
  '`pace doctor --gemm --device cuda` without a GPU says so in one line',
  () => {
    // Bug: libtorch's dispatcher dump (47 lines) came out instead.
    const run = runCli(['doctor', '--gemm', '--device', 'cuda']);
    expect([run.status, run.stderr]).toEqual([
      1,
      "pace doctor: device 'cuda': no CUDA device here (this libtorch has no CUDA, or no GPU is visible)\n",
    ]);
  },
);

test('`pace --version` prints the package version', () => {
  const run = runCli(['--version']);
  expect(run.status).toBe(0);
  expect(run.stdout).toBe(`${JSON.parse(fs.readFileSync(path.join(repoRoot, 'package.json'), 'utf8')).version}\n`);
});

test('`pace doctor` says which addon it loaded and why', () => {
  const run = runCli(['doctor']);
  expect(run.stdout).toMatch(/^addon {6}.*pace_peft\.node\n {11}built from source \(build\/Release\)$/m);
});

// Debian's reference BLAS (libblas3) is installed beside OpenBLAS by the bootstrap; putting it first on the
// library path makes libtorch's GEMMs run on it. The doctor must notice, and the speed must confirm it.
const referenceBlasDir = '/usr/lib/x86_64-linux-gnu/blas';
const withReferenceBlas = testIf(
  fs.existsSync(path.join(referenceBlasDir, 'libblas.so.3')),
  `no ${referenceBlasDir}/libblas.so.3; scripts/bootstrap.sh installs libblas3`,
);
withReferenceBlas('`pace doctor` warns about the slow reference BLAS, and measurement agrees', () => {
  const slow = runCli(['doctor', '--json', '--gemm'], { LD_LIBRARY_PATH: referenceBlasDir });
  expect(slow.status).toBe(1);
  const slowReport = JSON.parse(slow.stdout) as DoctorReport & { gemm: { gflops: number } };
  expect(slowReport.blas.kind).toBe('reference');
  expect(slowReport.warnings.join('\n')).toMatch(/slow reference implementation .* 30-90x slower/);

  const fast = runCli(['doctor', '--json', '--gemm']);
  expect(fast.status).toBe(0);
  const fastReport = JSON.parse(fast.stdout) as DoctorReport & { gemm: { gflops: number } };
  console.log(
    `GEMM 1024: ${fastReport.blas.kind} ${fastReport.gemm.gflops.toFixed(1)} GFLOP/s, reference ${slowReport.gemm.gflops.toFixed(1)} GFLOP/s`,
  );
  expect(fastReport.gemm.gflops).toBeGreaterThan(4 * slowReport.gemm.gflops);
});
