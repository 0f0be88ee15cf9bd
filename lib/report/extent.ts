/**
 * The smallest and largest of `values` ([Infinity, -Infinity] when there are none, as Math.min and Math.max of
 * nothing). A loop, because spreading an array into Math.min exceeds the call stack past about 125,000 numbers: a
 * sweep's every epoch of every run can be more.
 */
export function extent(values: Iterable<number>): [number, number] {
  let lo = Infinity;
  let hi = -Infinity;
  for (const value of values) {
    if (value < lo) lo = value;
    if (value > hi) hi = value;
  }
  return [lo, hi];
}
