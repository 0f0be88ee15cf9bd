// bench/profile-summary.ts: what the device run's per-kernel profile is read with. Checked on a small trace whose
// sums are known by hand, and on the kernel names libtorch, cuBLAS, CUTLASS and Inductor give.
import fs from 'node:fs';
import path from 'node:path';

import {
  formatSummary,
  kernelKind,
  readTrace,
  summarizeTrace,
  unionLength,
  type TraceEvent,
} from '../bench/profile-summary';
import { createModel, tensor, Trainer } from '../lib';
import { makeTempDir } from './support/paths';
import { colourData, tinyVit } from './support/synthetic';

test('kernels are sorted into kinds by the names their libraries give them', () => {
  const kinds: [string, string][] = [
    ['sm90_xmma_gemm_bf16bf16_bf16f32_f32_tn_n_tilesize128x128x64_warpgroupsize1x1x1_execute_segment_k_off', 'gemm'],
    ['nvjet_tst_128x256_64x4_2x1_v_bz_coopA_TNT', 'gemm'],
    ['triton_tem_fused_addmm_0', 'gemm'],
    ['fmha_cutlassF_bf16_aligned_64x64_rf_sm80(PyTorchMemEffAttention::AttentionKernel<...>::Params)', 'attention'],
    ['void pytorch_flash::flash_bwd_dq_dk_dv_loop_seqk_parallel_kernel<...>', 'attention'],
    ['void at::native::(anonymous namespace)::vectorized_layer_norm_kernel<float, float>', 'norm'],
    ['triton_red_fused_native_layer_norm_0', 'norm'],
    ['void at::native::vectorized_elementwise_kernel<4, at::native::GeluCUDAKernelImpl...>', 'elementwise'],
    ['triton_poi_fused_add_mul_0', 'elementwise'],
    ['void pace::kernels::paceEpilogueForward<__nv_bfloat16>(...)', 'elementwise'],
    ['void at::native::reduce_kernel<512, 1, at::native::ReduceOp<float, ...>>', 'reduction'],
    ['void at::native::(anonymous namespace)::multi_tensor_apply_kernel<...FusedAdamMathFunctor...>', 'optimizer'],
    ['void at::native::(anonymous namespace)::CatArrayBatchedCopy<...>', 'copy'],
    ['some_kernel_nobody_knows', 'other'],
  ];
  for (const [name, kind] of kinds) expect([name, kernelKind(name)]).toEqual([name, kind]);
  expect(kernelKind('Memcpy HtoD (Pageable -> Device)', 'gpu_memcpy')).toBe('copy');
});

test('the union of intervals counts overlaps once', () => {
  expect(unionLength([])).toBe(0);
  expect(
    unionLength([
      [0, 10],
      [5, 15],
      [20, 30],
      [21, 22],
    ]),
  ).toBe(25);
});

test('a GPU trace is summed by kind, per step, with the idle time between kernels', () => {
  const kernel = (name: string, ts: number, dur: number): TraceEvent => ({ ph: 'X', cat: 'kernel', name, ts, dur });
  const events: TraceEvent[] = [
    { ph: 'X', cat: 'cpu_op', name: 'aten::mm', ts: 0, dur: 250 },
    { ph: 'X', cat: 'cuda_runtime', name: 'cudaLaunchKernel', ts: 1, dur: 3 },
    { ph: 'X', cat: 'cuda_runtime', name: 'cudaLaunchKernel', ts: 5, dur: 3 },
    { ph: 'X', cat: 'cuda_runtime', name: 'cudaStreamSynchronize', ts: 9, dur: 200 }, // not a launch
    { ph: 'X', cat: 'cuda_runtime', name: 'cudaMemcpyAsync', ts: 215, dur: 3 },
    kernel('ampere_bf16_s16816gemm_bf16_128x64', 10, 100),
    kernel('vectorized_elementwise_kernel', 120, 10),
    kernel('flash_fwd_kernel', 130, 40),
    kernel('vectorized_elementwise_kernel', 150, 10), // overlaps the attention kernel on another stream
    { ph: 'X', cat: 'gpu_memcpy', name: 'Memcpy DtoD', ts: 200, dur: 10 },
    { ph: 'i', cat: 'kernel', name: 'instant events are not timed', ts: 400 },
  ];
  const s = summarizeTrace(events, 2);
  expect(s.windowMs).toBeCloseTo(0.125, 12); // 0 to 250 µs over 2 steps
  const gpu = s.gpu!;
  expect(gpu.busyMs).toBeCloseTo(0.08, 12); // 100 + 10 + 40 + 10 µs busy (the overlap counted once)
  expect(gpu.idleMs).toBeCloseTo(0.045, 12);
  expect(gpu.idleShare).toBeCloseTo(90 / 250, 12);
  expect(gpu.kernelsPerStep).toBe(2);
  expect(gpu.launchesPerStep).toBe(1.5);
  // Shares of the kernels' summed time (170 µs).
  expect(gpu.byKind.gemm.share).toBeCloseTo(100 / 170, 12);
  expect(gpu.byKind.elementwise.ms).toBeCloseTo(0.01, 12);
  expect(gpu.byKind.attention.share).toBeCloseTo(40 / 170, 12);
  expect(gpu.byKind.copy.share).toBeCloseTo(10 / 170, 12);
  expect(gpu.byKind.other.ms).toBe(0);
  // By name, most time first; the memcpy is the trace's own kind of event, named as such.
  expect(gpu.kernels.map((k) => [k.name, k.kind, k.ms, k.calls])).toEqual([
    ['ampere_bf16_s16816gemm_bf16_128x64', 'gemm', 0.05, 0.5],
    ['flash_fwd_kernel', 'attention', 0.02, 0.5],
    ['vectorized_elementwise_kernel', 'elementwise', 0.01, 1],
    ['Memcpy DtoD', 'copy', 0.005, 0.5],
  ]);
});

test("a trace larger than the call stack's argument limit is summed (a Swin-B step's, on an H200)", () => {
  // Math.min(...events) threw RangeError past a few hundred thousand events.
  const count = 400_000;
  const events: TraceEvent[] = Array.from({ length: count }, (_, i) => ({
    ph: 'X',
    cat: 'kernel',
    name: 'vectorized_elementwise_kernel',
    ts: 10 + 2 * i,
    dur: 1,
  }));
  const s = summarizeTrace(events, 4);
  expect(s.windowMs).toBeCloseTo((2 * (count - 1) + 1) / 1000 / 4, 12);
  expect(s.gpu!.busyMs).toBeCloseTo(count / 1000 / 4, 12);
  expect(s.gpu!.kernelsPerStep).toBe(count / 4);
});

test('the summary keeps every kernel, most time first; the printout shows the first 15', () => {
  // 20 kernels, kernel i running i + 1 µs once: the one a side's attention picked may be far down the list.
  const events: TraceEvent[] = Array.from({ length: 20 }, (_, i) => ({
    ph: 'X',
    cat: 'kernel',
    name: `kernel_${i}`,
    ts: 100 * i,
    dur: i + 1,
  }));
  const s = summarizeTrace(events, 1);
  expect(s.gpu!.kernels.map((k) => k.name)).toEqual(Array.from({ length: 20 }, (_, i) => `kernel_${19 - i}`));
  const printed = formatSummary('side', s)
    .split('\n')
    .filter((line) => /kernel_\d+$/.test(line));
  expect(printed.map((line) => line.split(' ').pop())).toEqual(s.gpu!.kernels.slice(0, 15).map((k) => k.name));
});

test('a CPU-only trace lists the operators by host time; an empty one is refused', () => {
  const s = summarizeTrace(
    [
      { ph: 'X', cat: 'cpu_op', name: 'aten::addmm', ts: 0, dur: 30 },
      { ph: 'X', cat: 'cpu_op', name: 'aten::gelu', ts: 30, dur: 10 },
      { ph: 'X', name: 'aten::addmm', ts: 40, dur: 30 }, // the legacy profiler's: no category
      { ph: 'X', cat: 'python_function', name: 'forward', ts: 0, dur: 70 },
    ],
    1,
  );
  expect(s.gpu).toBeUndefined();
  expect(s.topOperators).toEqual([
    { name: 'aten::addmm', ms: 0.06, calls: 2 },
    { name: 'aten::gelu', ms: 0.01, calls: 1 },
  ]);
  expect(() => summarizeTrace([{ ph: 'i', name: 'x' }], 1)).toThrow(/no timed events/);
  expect(() => summarizeTrace([], 0)).toThrow(/steps/);
});

// Every libtorch records the steps' operators: with Kineto (PyTorch's) also a GPU's kernels, without it (Debian's)
// through the legacy profiler, CPU operators only (a GPU step is then refused before it runs: a core test).
test('Trainer.profileSteps traces real steps: their operators, in one trace for the steps asked', async () => {
  const dir = makeTempDir('profile');
  try {
    using model = await createModel(tinyVit, { seed: 3 });
    model.addAdapters({ rank: 2 });
    const trainer = new Trainer(model, { pace: { sigma: 0.5, lambda: 1 } });
    const data = colourData(4, 1);
    using images = tensor(data.images, [4, 3, 16, 16]);
    using labels = tensor(data.labels);
    const trace = path.join(dir.dir, 'steps.json');
    // A trace that cannot be written is refused with the reason before any step, and (first in this process) does
    // not leave the process deciding that its libtorch records no traces.
    const nowhere = path.join(dir.dir, 'missing', 'steps.json');
    await expect(trainer.profileSteps(images, labels, { trace: nowhere, steps: 1 })).rejects.toThrow(
      `cannot write the profiler trace '${nowhere}'`,
    );
    expect(fs.existsSync(path.dirname(nowhere))).toBe(false);
    expect(trainer.iteration).toBe(0);
    await expect(trainer.profileSteps(images, labels, { trace, steps: 0 })).rejects.toThrow(/steps/);
    const results = await trainer.profileSteps(images, labels, { trace, steps: 2 });
    expect(results).toHaveLength(2);
    expect(trainer.iteration).toBe(2);
    expect(fs.readdirSync(dir.dir)).toEqual(['steps.json']); // no probe or partial file left
    const events = readTrace(trace);
    const summary = summarizeTrace(events, 2);
    // The step's linears are products: they must be among the traced operators (all of them: the summary's top
    // list ranks by time, where on a tiny model a product need not be).
    expect(events.map((event) => event.name)).toEqual(
      expect.arrayContaining([expect.stringMatching(/^aten::(addmm|mm|bmm|matmul|linear)$/)]),
    );
    expect(summary.windowMs).toBeGreaterThan(0);
  } finally {
    dir.cleanup();
  }
});
