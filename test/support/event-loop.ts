/** What a 10 ms interval timer saw while some work ran. */
export interface LoopWatch<T> {
  result: T;
  /** Time between consecutive ticks, in ms. */
  gaps: number[];
  /** Wall time of the work, in ms. */
  elapsed: number;
  /** Total lateness of the ticks (each gap beyond its 10 ms), in ms: about `elapsed` if the work held the loop. */
  held: number;
}

/** Runs `work` while a 10 ms timer measures how long the event loop was kept from running. */
export async function watchEventLoop<T>(work: () => Promise<T>): Promise<LoopWatch<T>> {
  const gaps: number[] = [];
  let last = performance.now();
  const timer = setInterval(() => {
    const now = performance.now();
    gaps.push(now - last);
    last = now;
  }, 10);
  const started = performance.now();
  try {
    const result = await work();
    const elapsed = performance.now() - started;
    gaps.push(performance.now() - last); // a hold at the work's very end delays no tick before it ends
    const held = gaps.reduce((sum, gap) => sum + Math.max(0, gap - 10), 0);
    return { result, gaps, elapsed, held };
  } finally {
    clearInterval(timer);
  }
}
