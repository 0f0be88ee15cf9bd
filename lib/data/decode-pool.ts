/** A failed decode: the item's index and the error. */
export interface DecodeFailure {
  index: number;
  error: unknown;
}

/**
 * libvips keeps one error buffer for the whole process: when decodes run in parallel, one clears it while another
 * fails (sharp then reports "Unknown error"), or appends its own message to another's (two lines). Such a failure is
 * decoded again alone, which tells its own reason.
 */
export function reasonMayBeLost(error: unknown): boolean {
  const message = (error as Error | undefined)?.message ?? '';
  return message === 'Unknown error' || message.includes('\n');
}

/**
 * Decodes `count` items with up to `concurrency` decodes in flight; `onDecoded` receives each result. With
 * `stopAtFailure` no new decode starts after a failure. Failures whose reason libvips may have lost or mixed up are
 * decoded again once nothing else is running; one that then succeeds counts as decoded (and, with `stopAtFailure`,
 * the remaining items are decoded after all). Returns the failures that remain, in the order they happened.
 */
export async function decodeAll<T>(
  count: number,
  decode: (index: number) => Promise<T>,
  onDecoded: (index: number, value: T) => void,
  options: { concurrency: number; stopAtFailure: boolean },
): Promise<DecodeFailure[]> {
  const queue = { next: 0 };
  const failures: DecodeFailure[] = [];
  while (queue.next < count) {
    const round = await decodeRound(count, queue, decode, onDecoded, options);
    for (const failure of round) {
      if (reasonMayBeLost(failure.error)) {
        try {
          onDecoded(failure.index, await decode(failure.index));
          continue;
        } catch (error) {
          failure.error = error;
        }
      }
      failures.push(failure);
    }
    if (options.stopAtFailure && failures.length > 0) break;
  }
  return failures;
}

/** Decodes from `queue.next` on, in parallel, until the queue is empty or (with stopAtFailure) a decode failed. */
async function decodeRound<T>(
  count: number,
  queue: { next: number },
  decode: (index: number) => Promise<T>,
  onDecoded: (index: number, value: T) => void,
  options: { concurrency: number; stopAtFailure: boolean },
): Promise<DecodeFailure[]> {
  const failures: DecodeFailure[] = [];
  const worker = async () => {
    while (queue.next < count && !(options.stopAtFailure && failures.length > 0)) {
      const index = queue.next++;
      try {
        onDecoded(index, await decode(index));
      } catch (error) {
        failures.push({ index, error });
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(options.concurrency, count - queue.next) }, worker));
  return failures;
}
