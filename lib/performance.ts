// Settings that change how fast pace-peft computes, never what it computes.
import { z } from 'zod';

import { nativeAddon } from './native';
import { parseOptions } from './options';

/** The intra-op thread setting and the CPUs this process may use. */
export interface ThreadSettings {
  /** Threads one tensor operation (a GEMM, a softmax) may use, for every thread of this process. */
  intraOp: number;
  /** CPUs this process may run on (its affinity mask, capped by a cgroup CPU quota). */
  available: number;
}

/**
 * Sets how many threads each tensor operation may use, from now on and for every operation of this process
 * (model calls, fits, evaluations and image preparation run on compute threads, which apply it at their next
 * job; the JavaScript thread's own copies use one). The default is
 * `PACE_NUM_THREADS`, else `OMP_NUM_THREADS`, else every CPU this process may use. Lower it to leave CPUs
 * to other work, for example several inference servers on one machine.
 */
export function setThreads(intraOp: number): void {
  nativeAddon().setThreads(parseOptions(z.number().int().min(1).max(1024), intraOp, 'intraOp'));
}

/** The current thread setting ({@link setThreads}) and the CPUs available. */
export function threads(): ThreadSettings {
  return nativeAddon().threads();
}

/**
 * How a noisy adapted linear of a PACE step is computed:
 * - `'auto'` (default): by shape, `'per-row'` for rows of at least 32 tokens (ViT at 224 has 197, a Swin window 49), else `'unfused'`;
 * - `'per-row'`: each sample (or window) multiplies its own weight W0 + diag(z)·ΔW, one GEMM's work instead of two
 *   (on the CPU; models on a GPU use `'stacked'` under this setting);
 * - `'stacked'`: one GEMM against [W0; ΔW], its element-wise work in one pass that also applies the GELU after
 *   fc1 and the residual add (with stochastic depth) after proj and fc2 ({@link setFusedEpilogues});
 * - `'unfused'`: the reference's two linears.
 * All give the same results up to float rounding; this exists for benchmarks and for checking that claim.
 */
export const PaceLinearStrategySchema = z.enum(['auto', 'per-row', 'stacked', 'unfused']);
/** See {@link PaceLinearStrategySchema}. */
export type PaceLinearStrategy = z.infer<typeof PaceLinearStrategySchema>;

/** Chooses the formulation of noisy adapted linears for the whole process (see {@link PaceLinearStrategySchema}). */
export function setPaceLinearStrategy(strategy: PaceLinearStrategy): void {
  nativeAddon().setPaceLinearStrategy(parseOptions(PaceLinearStrategySchema, strategy, 'strategy'));
}

/** The formulation noisy adapted linears use now. */
export function paceLinearStrategy(): PaceLinearStrategy {
  return PaceLinearStrategySchema.parse(nativeAddon().paceLinearStrategy());
}

/**
 * Whether element-wise work is folded into the kernel before it (default `true`, or `false` when the process
 * starts with `PACE_FUSED_EPILOGUES=0`): on the GPU, the GELU after fc1 and the residual add with stochastic depth
 * after proj and fc2 into the pass that applies the PACE noise, and under bf16 the cast after each LayerNorm that
 * feeds a product into the LayerNorm. Off, they run as separate operations, as in PyTorch; for benchmarks that
 * measure the fusions. Results agree up to float rounding.
 */
export function setFusedEpilogues(fused: boolean): void {
  nativeAddon().setFusedEpilogues(parseOptions(z.boolean(), fused, 'fused'));
}

/** Whether noisy linears fold their epilogue into their element-wise pass now ({@link setFusedEpilogues}). */
export function fusedEpilogues(): boolean {
  return nativeAddon().fusedEpilogues();
}
