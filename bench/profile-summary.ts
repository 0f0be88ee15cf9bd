// Sums a profiler trace by kind of work: the Chrome traces Trainer.profileSteps writes and torch.profiler's
// export_chrome_trace (both Kineto's format). For the GPU: time in GEMMs, attention, normalisation, element-wise
// kernels, reductions, the optimizer, copies and the rest, the kernels per step, and how much of the profiled
// window the GPU sat idle between kernels (launch gaps and host time it waited on), and the kernels that took the
// most time. Without GPU events, the operators' host time instead.
//
// Usage: tsx bench/profile-summary.ts <trace.json> [--steps N]
import fs from 'node:fs';
import { parseArgs } from 'node:util';

export interface TraceEvent {
  ph?: string;
  cat?: string;
  name?: string;
  ts?: number; // µs
  dur?: number; // µs
}

export const kernelKinds = [
  'gemm',
  'attention',
  'norm',
  'elementwise',
  'reduction',
  'optimizer',
  'copy',
  'other',
] as const;
export type KernelKind = (typeof kernelKinds)[number];

// In order: the first match names the kind (CUTLASS's fused attention is attention, a fused triton GEMM template a
// GEMM, not element-wise).
const patterns: [KernelKind, RegExp][] = [
  ['attention', /flash|fmha|attention|softmax|sdpa/],
  ['gemm', /gemm|cutlass|xmma|cublas|nvjet|triton_tem|_mm_|matmul|splitk|wgmma|hmma/],
  ['norm', /layer_?norm|rms_?norm/],
  ['optimizer', /adam|multi_tensor_apply|foreach/],
  ['copy', /memcpy|memset|copy|catarray|cat_|index|gather|scatter|transpose|permute/],
  ['reduction', /reduce|triton_red|triton_per|sum_|norm_kernel/],
  ['elementwise', /elementwise|vectorized|unrolled|triton_poi|pointwise|fused|pace|gelu|dropout|bernoulli|normal_/],
];

export function kernelKind(name: string, category = 'kernel'): KernelKind {
  if (category === 'gpu_memcpy' || category === 'gpu_memset') return 'copy';
  const lower = name.toLowerCase();
  for (const [kind, pattern] of patterns) if (pattern.test(lower)) return kind;
  return 'other';
}

export interface TraceSummary {
  steps: number;
  /** From the first event's start to the last one's end, per step (ms). */
  windowMs: number;
  gpu?: {
    /** Kernel, copy and memset time per step (ms), by kind, and its share of the busy time. */
    byKind: Record<KernelKind, { ms: number; share: number }>;
    busyMs: number;
    /** Per step: the window's time with nothing on the GPU (ms), and that as a share of the window. */
    idleMs: number;
    idleShare: number;
    kernelsPerStep: number;
    /** Host calls that launch work (kernels, graphs, copies) per step. */
    launchesPerStep: number;
    /**
     * Every kernel by name, most time first: ms and calls per step (which GEMMs run slow, which attention kernel
     * each side picked). The printout shows the first {@link printedKernelCount}; the JSON holds them all.
     */
    kernels: { name: string; kind: KernelKind; ms: number; calls: number }[];
  };
  /** Without GPU events: the top operators by host time per step (ms, summed over nested calls too). */
  topOperators?: { name: string; ms: number; calls: number }[];
}

const printedKernelCount = 15;

const isDeviceWork = (e: TraceEvent) => e.cat === 'kernel' || e.cat === 'gpu_memcpy' || e.cat === 'gpu_memset';

/** The length of the union of [start, end) intervals. */
export function unionLength(intervals: [number, number][]): number {
  const sorted = [...intervals].sort((a, b) => a[0] - b[0]);
  let total = 0;
  let [start, end] = [-Infinity, -Infinity];
  for (const [s, e] of sorted) {
    if (s > end) {
      if (end > start) total += end - start;
      [start, end] = [s, e];
    } else if (e > end) {
      end = e;
    }
  }
  if (end > start) total += end - start;
  return total;
}

export function summarizeTrace(events: TraceEvent[], steps: number): TraceSummary {
  if (!Number.isInteger(steps) || steps < 1) throw new Error('steps must be a positive integer');
  const timed = events.filter((e) => e.ph === 'X' && typeof e.ts === 'number' && typeof e.dur === 'number');
  if (timed.length === 0) throw new Error('the trace holds no timed events');
  // A loop, not Math.min(...spread): a Swin-B step's trace holds more events than the call stack takes arguments.
  let first = Infinity;
  let last = -Infinity;
  for (const e of timed) {
    first = Math.min(first, e.ts!);
    last = Math.max(last, e.ts! + e.dur!);
  }
  const windowUs = last - first;
  const summary: TraceSummary = { steps, windowMs: windowUs / 1000 / steps };
  const device = timed.filter(isDeviceWork);
  if (device.length > 0) {
    const byKindUs = Object.fromEntries(kernelKinds.map((k) => [k, 0])) as Record<KernelKind, number>;
    const byName = new Map<string, { kind: KernelKind; us: number; calls: number }>();
    for (const e of device) {
      const kind = kernelKind(e.name ?? '', e.cat);
      byKindUs[kind] += e.dur!;
      const entry = byName.get(e.name ?? '?') ?? { kind, us: 0, calls: 0 };
      entry.us += e.dur!;
      entry.calls += 1;
      byName.set(e.name ?? '?', entry);
    }
    const busyUs = unionLength(device.map((e) => [e.ts!, e.ts! + e.dur!]));
    const totalUs = Object.values(byKindUs).reduce((a, b) => a + b, 0);
    const launches = timed.filter(
      (e) => (e.cat === 'cuda_runtime' || e.cat === 'cuda_driver') && /launch|memcpy|memset/i.test(e.name ?? ''),
    ).length;
    summary.gpu = {
      byKind: Object.fromEntries(
        kernelKinds.map((k) => [k, { ms: byKindUs[k] / 1000 / steps, share: totalUs ? byKindUs[k] / totalUs : 0 }]),
      ) as Record<KernelKind, { ms: number; share: number }>,
      busyMs: busyUs / 1000 / steps,
      idleMs: (windowUs - busyUs) / 1000 / steps,
      idleShare: (windowUs - busyUs) / windowUs,
      kernelsPerStep: device.filter((e) => e.cat === 'kernel').length / steps,
      launchesPerStep: launches / steps,
      kernels: [...byName.entries()]
        .sort((a, b) => b[1].us - a[1].us)
        .map(([name, { kind, us, calls }]) => ({ name, kind, ms: us / 1000 / steps, calls: calls / steps })),
    };
  } else {
    const operators = new Map<string, { us: number; calls: number }>();
    // Kineto marks operators `cpu_op`; the legacy profiler (a libtorch without Kineto) gives no category.
    for (const e of timed.filter((e) => e.cat === 'cpu_op' || e.cat === undefined)) {
      const entry = operators.get(e.name ?? '?') ?? { us: 0, calls: 0 };
      entry.us += e.dur!;
      entry.calls += 1;
      operators.set(e.name ?? '?', entry);
    }
    summary.topOperators = [...operators.entries()]
      .sort((a, b) => b[1].us - a[1].us)
      .slice(0, 12)
      .map(([name, { us, calls }]) => ({ name, ms: us / 1000 / steps, calls: calls / steps }));
  }
  return summary;
}

export function readTrace(file: string): TraceEvent[] {
  const parsed = JSON.parse(fs.readFileSync(file, 'utf8')) as { traceEvents?: TraceEvent[] } | TraceEvent[];
  const events = Array.isArray(parsed) ? parsed : parsed.traceEvents;
  if (!Array.isArray(events)) throw new Error(`${file} is not a Chrome trace (no traceEvents)`);
  return events;
}

export function formatSummary(label: string, s: TraceSummary): string {
  const lines = [`${label}: ${s.windowMs.toFixed(2)} ms per step over ${s.steps} steps`];
  if (s.gpu) {
    const { gpu } = s;
    lines.push(
      `  GPU busy ${gpu.busyMs.toFixed(2)} ms, idle ${gpu.idleMs.toFixed(2)} ms (${(gpu.idleShare * 100).toFixed(0)}% of the window); ` +
        `${gpu.kernelsPerStep.toFixed(0)} kernels and ${gpu.launchesPerStep.toFixed(0)} launch calls per step`,
    );
    for (const kind of kernelKinds) {
      const { ms, share } = gpu.byKind[kind];
      if (ms > 0) lines.push(`  ${kind.padEnd(12)} ${ms.toFixed(2).padStart(8)} ms  ${(share * 100).toFixed(1)}%`);
    }
    lines.push('  top kernels (ms per step, calls per step, kind, name):');
    for (const k of gpu.kernels.slice(0, printedKernelCount)) {
      const name = k.name.length > 110 ? `${k.name.slice(0, 107)}...` : k.name;
      lines.push(`  ${k.ms.toFixed(2).padStart(8)} ${k.calls.toFixed(0).padStart(5)}  ${k.kind.padEnd(11)} ${name}`);
    }
  } else {
    for (const op of s.topOperators ?? [])
      lines.push(`  ${op.name.padEnd(40)} ${op.ms.toFixed(2).padStart(8)} ms  ${op.calls.toFixed(0)} calls`);
  }
  return lines.join('\n');
}

// Only when run as this script (bundled into another, `require.main === module` holds there too).
if (require.main === module && /profile-summary\.[cjt]s$/.test(process.argv[1] ?? '')) {
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: { steps: { type: 'string', default: '1' } },
  });
  if (positionals.length !== 1) {
    console.error('usage: tsx bench/profile-summary.ts <trace.json> [--steps N]');
    process.exit(2);
  }
  console.log(formatSummary(positionals[0], summarizeTrace(readTrace(positionals[0]), Number(values.steps))));
}
