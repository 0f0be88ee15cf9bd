/** Mean and standard deviation of repeated runs. */
export interface MeanStd {
  mean: number;
  /** The population standard deviation (numpy's default, ddof = 0); 0 for one value. */
  std: number;
  n: number;
}

/** Mean ± std of a list of values (none: NaN). */
export function meanStd(values: number[]): MeanStd {
  const n = values.length;
  if (n === 0) return { mean: NaN, std: NaN, n };
  const mean = values.reduce((a, b) => a + b, 0) / n;
  const variance = values.reduce((a, b) => a + (b - mean) ** 2, 0) / n;
  return { mean, std: Math.sqrt(variance), n };
}

/** The mean of the finite values (none: undefined). */
export function meanOf(values: (number | undefined)[]): number | undefined {
  const finite = values.filter((v): v is number => v !== undefined && Number.isFinite(v));
  return finite.length === 0 ? undefined : finite.reduce((a, b) => a + b, 0) / finite.length;
}

/**
 * The index of the highest score: the paper's selection of a setting by validation accuracy. Ties go to the
 * first (the grid's order); runs without a score (failed, unfinished) are passed over; none scored: undefined.
 */
export function selectBest(scores: (number | undefined)[]): number | undefined {
  let best: number | undefined;
  scores.forEach((score, i) => {
    if (score === undefined || !Number.isFinite(score)) return;
    if (best === undefined || score > (scores[best] as number)) best = i;
  });
  return best;
}
