import os from 'node:os';

import { z } from 'zod';

import { nativeAddon, nativeAddonPath } from './native';
import { parseOptions } from './options';

/** What {@link doctor} reports about the native runtime. */
export interface DoctorReport {
  /** Version of this package. */
  version: string;
  node: string;
  platform: string;
  /** Path of the native addon that was loaded. */
  addon: string;
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
  };
  threads: {
    /** libtorch's intra-op threads (one operation split across cores). */
    intraOp: number;
    /** libtorch's inter-op threads. */
    interOp: number;
    /** Logical CPUs of this machine. */
    hardware: number;
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
  return {
    version,
    node: process.version,
    platform: `${os.platform()}-${os.arch()}`,
    addon: nativeAddonPath(),
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
}

/**
 * Times float32 matrix products on a libtorch worker thread (the event loop keeps running): the quickest
 * way to see whether the BLAS and thread settings are fast. OpenBLAS on a modern core reaches tens to
 * hundreds of GFLOP/s; the reference BLAS a few.
 */
export async function measureGemm(options: GemmOptions = {}): Promise<GemmMeasurement> {
  const { size, seconds, device } = parseOptions(GemmOptionsSchema, options, 'options');
  return nativeAddon().measureGemm(size, seconds, device);
}

/** The report as a short, human-readable text (what `pace doctor` prints). */
export function formatDoctorReport(report: DoctorReport, gemm?: GemmMeasurement): string {
  const blasDetail = [report.blas.detail, report.blas.threading && `threading: ${report.blas.threading}`]
    .filter(Boolean)
    .join('; ');
  const lines = [
    `pace-peft ${report.version} (node ${report.node}, ${report.platform})`,
    `addon      ${report.addon}`,
    `libtorch   ${report.torchVersion}`,
    `cuda       ${report.cuda.built ? `built, ${report.cuda.deviceCount} device(s) visible` : 'not built (CPU only)'}`,
    `blas       ${report.blas.kind}${report.blas.library ? ` (${report.blas.library})` : ''}`,
    ...(blasDetail ? [`           ${blasDetail}`] : []),
    `threads    intra-op ${report.threads.intraOp}, inter-op ${report.threads.interOp}, hardware ${report.threads.hardware}`,
  ];
  if (gemm) {
    lines.push(
      `gemm       ${gemm.gflops.toFixed(1)} GFLOP/s (${gemm.size}×${gemm.size} float32 on ${gemm.device}, ${gemm.iterations} products in ${gemm.seconds.toFixed(2)} s)`,
    );
  }
  for (const warning of report.warnings) lines.push(`warning    ${warning}`);
  return lines.join('\n');
}

/** Tensor handles alive in this JavaScript environment and the native bytes they hold (for leak checks). */
export interface MemoryStats {
  liveTensors: number;
  tensorBytes: number;
}

/** How many tensors are alive (not disposed or collected) and how much native memory they hold. */
export function memoryStats(): MemoryStats {
  return nativeAddon().memoryStats();
}
