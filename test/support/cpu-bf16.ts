import { doctor } from '../../lib';

/**
 * Whether precision 'bf16' runs on this CPU: libtorch's bf16 matrix products here sum in float32 (oneDNN's path).
 * Where they sum in bf16 (libtorch 1.13's own loops, on CPUs without AVX-512) it is refused, and its tests skip.
 */
export const cpuBf16Runs = doctor().cpuBf16.sumsInFloat;

export const cpuBf16Refused = "libtorch sums bf16 matrix products in bf16 on this CPU, so precision 'bf16' is refused";
