import { HttpError } from './http-error';

/**
 * A bounded lane of work: at most `concurrency` tasks run, at most `maxQueued` wait; one more is refused at
 * once with 503 and Retry-After instead of waiting without bound. A task whose `signal` aborts while it waits
 * leaves the queue at once, and one aborted by the time its turn comes is never run.
 */
export class Lane {
  #active = 0;
  #waiting: (() => void)[] = [];

  constructor(
    readonly name: string,
    private readonly concurrency: number,
    private readonly maxQueued: number,
    private readonly retryAfterSeconds: number,
  ) {}

  async run<T>(task: () => Promise<T>, signal?: AbortSignal): Promise<T> {
    signal?.throwIfAborted();
    if (this.#active >= this.concurrency) {
      if (this.#waiting.length >= this.maxQueued) {
        throw new HttpError(503, `the server is busy decoding ${this.name} images; retry later`, {
          'retry-after': String(this.retryAfterSeconds),
        });
      }
      await this.#turn(signal);
    } else {
      this.#active += 1;
    }
    try {
      signal?.throwIfAborted();
      return await task();
    } finally {
      const next = this.#waiting.shift();
      if (next) next();
      else this.#active -= 1;
    }
  }

  /** Resolves when a running task hands its place on; rejects (and leaves the queue) if `signal` aborts first. */
  #turn(signal?: AbortSignal): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const handedOn = () => {
        signal?.removeEventListener('abort', givenUp);
        resolve();
      };
      const givenUp = () => {
        this.#waiting.splice(this.#waiting.indexOf(handedOn), 1);
        reject(signal?.reason);
      };
      this.#waiting.push(handedOn);
      signal?.addEventListener('abort', givenUp, { once: true });
    });
  }

  /** Tasks running and waiting. */
  get load(): { active: number; waiting: number } {
    return { active: this.#active, waiting: this.#waiting.length };
  }
}
