import { exitStatusOf } from '../exit-status';

/** The signals that ask a long command to stop: Ctrl-C, and SIGTERM (docker stop, Slurm, systemd). */
const STOP_SIGNALS = ['SIGINT', 'SIGTERM'] as const;

export type StopSignal = (typeof STOP_SIGNALS)[number];

/** A command's watch on the stop signals, in force until disposed. */
export interface StopWatch extends Disposable {
  /** Aborted by the first stop signal, with the signal's name as its reason. */
  signal: AbortSignal;
  /** The first stop signal received, if any. */
  received(): StopSignal | undefined;
  /** 128 + the number of the signal received (130 for SIGINT, 143 for SIGTERM), if any. */
  exitCode(): number | undefined;
}

/**
 * Watches SIGINT and SIGTERM. The first aborts `signal` so the command can stop cleanly. A second one ends the
 * process at once by the signal's default action (the listeners are gone by then), unless `onRepeat` is given: it
 * is then called instead, for a command that has others to stop first.
 */
export function watchStopSignals(onRepeat?: (signal: StopSignal) => void): StopWatch {
  const controller = new AbortController();
  let first: StopSignal | undefined;
  const listeners = new Map<StopSignal, () => void>();
  const remove = () => listeners.forEach((listener, name) => process.removeListener(name, listener));
  for (const name of STOP_SIGNALS) {
    const listener = () => {
      if (first === undefined) {
        first = name;
        if (!onRepeat) remove();
        controller.abort(name);
      } else {
        onRepeat?.(name);
      }
    };
    listeners.set(name, listener);
    process.on(name, listener);
  }
  return {
    signal: controller.signal,
    received: () => first,
    exitCode: () => (first === undefined ? undefined : exitStatusOf(first)),
    [Symbol.dispose]: remove,
  };
}
