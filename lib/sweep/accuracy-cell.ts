import type { MeanStd } from './stats';

/** An accuracy in percent with two decimals. */
export const percent = (value: number): string => (100 * value).toFixed(2);

/**
 * An accuracy over seeds as a table shows it, in percent: `mean ± std`, a single seed's value alone (a std of 0
 * would read as seeds that agree), and `(n=1 of 3)` after it when fewer seeds than `planned` have a result;
 * `—` when none has.
 */
export function accuracyCell(stats: MeanStd, planned: number): string {
  if (stats.n === 0) return '—';
  const value = stats.n === 1 ? percent(stats.mean) : `${percent(stats.mean)} ± ${percent(stats.std)}`;
  return stats.n < planned ? `${value} (n=${stats.n} of ${planned})` : value;
}
