import os from 'node:os';

import { z } from 'zod';

import { PaceOptionError } from './errors';
import { nativeAddon, nativeAddonLocation, type CudaMemoryStats } from './native';
import { parseOptions } from './options';

/** What {@link doctor} reports about the native runtime. */
export interface DoctorReport {
  /** Version of this package. */
  version: string;
  node: string;
  platform: string;
  /** Path of the native addon that was loaded. */
  addon: string;
  /** Why that addon: a source build, or which prebuilt binary package and the libtorch it matched. */
  addonReason: string;
  /** Version of the libtorch the addon runs on. */
  torchVersion: string;
  cuda: {
    /** This libtorch can run CUDA. */
    built: boolean;
    /** GPUs visible to it. */
    deviceCount: number;
  };
  blas: {
    /** `'openblas'`, `'mkl'`, `'blis'`, `'atlas'`, `'reference'` (the slow netlib BLAS) or `'unknown'`. */
    kind: string;
    /** The BLAS shared library in this process. */
    library: string;
    /** The BLAS's own description of its build, when it gives one. */
    detail: string;
    /** `'openmp'`, `'pthreads'`, `'sequential'` or `''` when unknown. */
    threading: string;
    /** Version of oneDNN (MKL-DNN) in libtorch, which runs its CPU convolutions; `''` when absent. */
    onednn: string;
  };
  threads: {
    /** libtorch's intra-op threads (one operation split across cores). */
    intraOp: number;
    /** libtorch's inter-op threads. */
    interOp: number;
    /** Logical CPUs of this machine. */
    hardware: number;
    /** CPUs this process may use (affinity mask and cgroup quota). */
    available: number;
    /**
     * Threads the addon's own parallel loops (per-sample weights, CPU attention) actually run on, measured:
     * 1 when the addon was built without the OpenMP runtime libtorch uses, which the warnings then name.
     */
    coreLoops: number;
  };
  /** The addon's AVX2 attention kernels run on this CPU (float32 attention on the CPU uses them). */
  cpuAttentionKernels: boolean;
  /** `precision: 'bf16'` on the CPU. */
  cpuBf16: {
    /** The CPU has bf16 arithmetic units (AVX-512 BF16 or AMX-BF16). */
    units: boolean;
    /** It has AMX tiles. */
    amx: boolean;
    /** Where libtorch's bf16 matrix products run: oneDNN (fast) or ATen's own loops (slower than float32). */
    gemm: 'onednn' | 'aten';
    /** That path in words. */
    reason: string;
    /**
     * Its products sum in float32, as oneDNN's and CUDA's do. Where they sum in bf16 (libtorch 1.13's own loops),
     * `precision: 'bf16'` is refused on this CPU: 8 % off at ViT-B's widths, and slower than float32.
     */
    sumsInFloat: boolean;
  };
  /** libtorch's own parallelism report (`at::get_parallel_info()`). */
  parallelInfo: string;
  /** libtorch's build configuration (`at::show_config()`). */
  buildConfig: string;
  /** Problems worth fixing, such as the reference BLAS. Empty when all is well. */
  warnings: string[];
}

/** Reports the libtorch version, CUDA, the BLAS in use and thread settings, with warnings. */
export function doctor(): DoctorReport {
  const report = nativeAddon().doctor();
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const { version } = require('../package.json') as { version: string };
  const { file, reason } = nativeAddonLocation();
  return {
    version,
    node: process.version,
    platform: `${os.platform()}-${os.arch()}`,
    addon: file,
    addonReason: reason,
    ...report,
  };
}

const GemmOptionsSchema = z
  .object({
    /** Matrix size n of the n×n float32 products. */
    size: z.number().int().min(1).max(16384).default(1024),
    /** Keep multiplying for at least this long. */
    seconds: z.number().min(0).max(600).default(1),
    device: z.string().min(1).default('cpu'),
    /** Intra-op threads for this measurement only; 0 keeps the current setting ({@link setThreads}). */
    threads: z.number().int().min(0).max(1024).default(0),
    /** `bfloat16` measures the bf16 path `precision: 'bf16'` takes. */
    dtype: z.enum(['float32', 'bfloat16']).default('float32'),
  })
  .strict();

/** Options of {@link measureGemm}. */
export type GemmOptions = z.input<typeof GemmOptionsSchema>;

/** What {@link measureGemm} measured. */
export interface GemmMeasurement {
  size: number;
  iterations: number;
  seconds: number;
  /** Achieved GFLOP/s (2n³ per product). */
  gflops: number;
  device: string;
  dtype: 'float32' | 'bfloat16';
  /** Intra-op threads it ran with. */
  threads: number;
}

/**
 * Times float32 matrix products on a libtorch worker thread (the event loop keeps running): the quickest
 * way to see whether the BLAS and thread settings are fast. OpenBLAS on a modern core reaches tens to
 * hundreds of GFLOP/s; the reference BLAS a few.
 */
export async function measureGemm(options: GemmOptions = {}): Promise<GemmMeasurement> {
  const { size, seconds, device, threads, dtype } = parseOptions(GemmOptionsSchema, options, 'options');
  return nativeAddon().measureGemm(size, seconds, device, threads, dtype);
}

/** The report as a short, human-readable text (what `pace doctor` prints). */
export function formatDoctorReport(report: DoctorReport, gemm?: GemmMeasurement | GemmMeasurement[]): string {
  const gemms = gemm === undefined ? [] : Array.isArray(gemm) ? gemm : [gemm];
  const blasDetail = [report.blas.detail, report.blas.threading && `threading: ${report.blas.threading}`]
    .filter(Boolean)
    .join('; ');
  const lines = [
    `pace-peft ${report.version} (node ${report.node}, ${report.platform})`,
    `addon      ${report.addon}`,
    `           ${report.addonReason}`,
    `libtorch   ${report.torchVersion}`,
    `cuda       ${report.cuda.built ? `built, ${report.cuda.deviceCount} device(s) visible` : 'not built (CPU only)'}`,
    `blas       ${report.blas.kind}${report.blas.library ? ` (${report.blas.library})` : ''}`,
    ...(blasDetail ? [`           ${blasDetail}`] : []),
    `onednn     ${report.blas.onednn ? `${report.blas.onednn} (convolutions)` : 'not built'}`,
    `threads    intra-op ${report.threads.intraOp}, inter-op ${report.threads.interOp} (unused), ${report.threads.available} CPU(s) available of ${report.threads.hardware}`,
    `           the addon's own loops: ${report.threads.coreLoops} thread(s); CPU attention kernels: ${report.cpuAttentionKernels ? 'AVX2' : 'none (ATen products)'}`,
    `cpu bf16   ${report.cpuBf16.units ? `bf16 units${report.cpuBf16.amx ? ' (AMX)' : ''}` : 'no bf16 units'}; products: ${report.cpuBf16.reason}`,
  ];
  for (const measured of gemms) {
    lines.push(
      `gemm       ${measured.gflops.toFixed(1)} GFLOP/s with ${measured.threads} thread(s) (${measured.size}×${measured.size} ${measured.dtype} on ${measured.device}, ${measured.iterations} products in ${measured.seconds.toFixed(2)} s)`,
    );
  }
  for (const warning of report.warnings) lines.push(`warning    ${warning}`);
  return lines.join('\n');
}

/** Tensor handles alive in this JavaScript environment and the native bytes they hold (for leak checks). */
export interface MemoryStats {
  /** Tensor handles alive in this thread (not disposed or collected). */
  liveTensors: number;
  /** The memory those handles hold: a storage shared by several handles (views, a no-op `to()`) counts once. */
  tensorBytes: number;
  /** Freed CPU blocks of 1 MiB or more kept for reuse by the next step (see {@link releaseCachedMemory}). */
  cpuCacheBytes: number;
  /** Large CPU allocations served from that cache, and those that went to the system allocator. */
  cpuCacheHits: number;
  cpuCacheMisses: number;
}

/** How many tensors are alive (not disposed or collected) and how much native memory they hold. */
export function memoryStats(): MemoryStats {
  return nativeAddon().memoryStats();
}

/**
 * Returns the memory kept for reuse to the system. Training keeps freed CPU activations (up to a quarter of
 * physical memory) so the next step does not fault them in again; `fit` releases them when it ends. On a GPU
 * the CUDA caching allocator keeps freed blocks as PyTorch's does, for the whole process; this returns its unused
 * ones too (as `torch.cuda.empty_cache()`), so that another process can have them. That waits for the GPU's
 * queued work, and the next large allocation pays for its memory again: call it between jobs, not between steps.
 * Tensors in use and captured step graphs keep theirs.
 *
 * Returns false when the CUDA part was skipped because a step graph was being captured or replayed on another
 * thread at that moment (call it again once the fit is done); true otherwise, also without a GPU.
 */
export function releaseCachedMemory(): boolean {
  return nativeAddon().releaseCachedMemory(true);
}

/**
 * The CUDA caching allocator's counters for GPU `device` (as torch.cuda's memory_allocated, max_memory_allocated
 * and memory_reserved), or `undefined` where this build has no CUDA or there is no such GPU. `resetPeak` restarts
 * the peak from what is allocated now, after reading it.
 */
export function cudaMemoryStats(device = 0, options: { resetPeak?: boolean } = {}): CudaMemoryStats | undefined {
  if (!Number.isInteger(device) || device < 0) throw new PaceOptionError('device must be a GPU index >= 0');
  return nativeAddon().cudaMemory(device, options.resetPeak ?? false);
}
