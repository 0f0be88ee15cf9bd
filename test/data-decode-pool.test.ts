import { decodeAll } from '../lib/data/decode-pool';

// The parallel decoding loadImages runs, with a stand-in decoder that fails the way libvips does under concurrency:
// "Unknown error" (its shared error buffer cleared by another decode) or two messages joined.

/** A decoder whose first attempt at the `flaky` items loses its reason; records how many decodes ran at once. */
function standIn(flaky: Map<number, { first: string; alone: string | undefined }>) {
  let running = 0;
  const concurrencyAtRetry: number[] = [];
  const attempts = new Map<number, number>();
  const decode = async (index: number): Promise<number> => {
    const attempt = (attempts.get(index) ?? 0) + 1;
    attempts.set(index, attempt);
    if (attempt > 1) concurrencyAtRetry.push(running);
    running++;
    await new Promise((resolve) => setTimeout(resolve, 1));
    running--;
    const failure = flaky.get(index);
    const message = failure && (attempt === 1 ? failure.first : failure.alone);
    if (message !== undefined) throw new Error(message);
    return index * 10;
  };
  return { decode, concurrencyAtRetry, attempts };
}

test('skipping: lost reasons are decoded again alone; the real reason is kept, a success counts', async () => {
  const flaky = new Map([
    [3, { first: 'Unknown error', alone: 'pngload: end of stream' }],
    [5, { first: 'jpeg: bad\njpeg: bad', alone: 'jpeg: bad' }],
    [7, { first: 'Unknown error', alone: undefined }], // decodes alone: the failure was not its own
    [9, { first: 'webp: corrupt', alone: 'never asked' }],
  ]);
  const { decode, concurrencyAtRetry, attempts } = standIn(flaky);
  const decoded = new Map<number, number>();
  const failures = await decodeAll(12, decode, (i, v) => decoded.set(i, v), { concurrency: 4, stopAtFailure: false });
  expect(failures.map(({ index, error }) => [index, (error as Error).message]).sort()).toEqual([
    [3, 'pngload: end of stream'],
    [5, 'jpeg: bad'],
    [9, 'webp: corrupt'],
  ]);
  expect(decoded.get(7)).toBe(70);
  expect(decoded.size).toBe(9);
  expect(concurrencyAtRetry).toEqual([0, 0, 0]); // each retry ran alone
  expect(attempts.get(9)).toBe(1); // a reason of its own is not decoded again
});

test('stopping at a failure: the other decodes finish first; a lost reason is then decoded alone', async () => {
  const flaky = new Map([[6, { first: 'Unknown error', alone: 'pngload: end of stream' }]]);
  const { decode, concurrencyAtRetry, attempts } = standIn(flaky);
  const failures = await decodeAll(40, decode, () => undefined, { concurrency: 4, stopAtFailure: true });
  expect(failures.map(({ index, error }) => [index, (error as Error).message])).toEqual([
    [6, 'pngload: end of stream'],
  ]);
  expect(concurrencyAtRetry).toEqual([0]);
  expect(attempts.size).toBeLessThan(40); // the load stopped
});

test('stopping at a failure that turns out not to be one: decoding goes on to the end', async () => {
  const flaky = new Map([[6, { first: 'Unknown error', alone: undefined }]]);
  const { decode } = standIn(flaky);
  const decoded = new Set<number>();
  const failures = await decodeAll(40, decode, (i) => decoded.add(i), { concurrency: 4, stopAtFailure: true });
  expect(failures).toEqual([]);
  expect(decoded.size).toBe(40);
});
