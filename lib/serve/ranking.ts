/** Softmax of one row of logits, computed in float64. */
export function softmax(logits: Float32Array): Float32Array {
  let max = -Infinity;
  for (const v of logits) max = Math.max(max, v);
  const exps = new Float64Array(logits.length);
  let sum = 0;
  for (let i = 0; i < logits.length; i++) {
    exps[i] = Math.exp(logits[i] - max);
    sum += exps[i];
  }
  return Float32Array.from(exps, (v) => v / sum);
}

/** Beyond this many, the top k are found by one sort rather than by keeping the best so far. */
const KEPT_AT_MOST = 64;

/**
 * The indices of the `k` largest values, largest first (the lower index first among equal values). A few are kept
 * in one pass: a 21,843-class head's answer no longer sorts every class to keep five.
 */
export function topIndices(values: Float32Array, k: number): number[] {
  const count = Math.min(k, values.length);
  if (count > KEPT_AT_MOST) {
    return Array.from(values.keys())
      .sort((a, b) => values[b] - values[a] || a - b)
      .slice(0, count);
  }
  const best: number[] = [];
  for (let i = 0; i < values.length; i++) {
    const value = values[i];
    if (best.length === count) {
      if (!(value > values[best[count - 1]])) continue; // (an equal value keeps the earlier index)
      best.pop();
    }
    let at = best.length;
    while (at > 0 && value > values[best[at - 1]]) at--;
    best.splice(at, 0, i);
  }
  return best;
}
