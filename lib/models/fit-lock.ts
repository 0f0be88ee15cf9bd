import { AsyncLocalStorage } from 'node:async_hooks';

import { PaceBusyError } from '../errors';

/** The fit whose code (its loop and its callbacks) is running, if any: its lock token. */
const runningFit = new AsyncLocalStorage<object>();

/**
 * A model's claim by a running fit. While a fit holds it, the model refuses every call that does not come from
 * that fit's own code (its loop and its callbacks, which it awaits): such a call would change the model's state
 * or random draws between two of the fit's steps, or find it busy on the training thread and break the fit.
 */
export class FitLock {
  #token: object | undefined;

  /** Runs `body` as the fit that holds this lock; a second fit is refused. */
  async hold<T>(body: () => Promise<T>): Promise<T> {
    if (this.#token) throw new PaceBusyError('the model is busy: another fit is training it');
    const token = {};
    this.#token = token;
    try {
      return await runningFit.run(token, body);
    } finally {
      this.#token = undefined;
    }
  }

  /** Whether a fit holds the lock. */
  get held(): boolean {
    return this.#token !== undefined;
  }

  /** Throws unless no fit holds the lock or the caller is the holding fit's own code. */
  check(operation: string): void {
    if (this.#token && runningFit.getStore() !== this.#token) {
      throw new PaceBusyError(
        `${operation}: the model is busy: a fit is training it; call this from the fit's callbacks or after the fit resolves`,
      );
    }
  }
}
