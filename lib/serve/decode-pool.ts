import { HttpError } from './http-error';

/**
 * A bounded lane of work: at most `concurrency` tasks run, at most `maxQueued` wait; one more is refused at
 * once with 503 and Retry-After instead of waiting without bound.
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

  async run<T>(task: () => Promise<T>): Promise<T> {
    if (this.#active >= this.concurrency) {
      if (this.#waiting.length >= this.maxQueued) {
        throw new HttpError(503, `the server is busy decoding ${this.name} images; retry later`, {
          'retry-after': String(this.retryAfterSeconds),
        });
      }
      await new Promise<void>((resolve) => this.#waiting.push(resolve));
    } else {
      this.#active += 1;
    }
    try {
      return await task();
    } finally {
      const next = this.#waiting.shift();
      if (next) next();
      else this.#active -= 1;
    }
  }

  /** Tasks running and waiting. */
  get load(): { active: number; waiting: number } {
    return { active: this.#active, waiting: this.#waiting.length };
  }
}
