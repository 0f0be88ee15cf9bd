import { SingleBar } from 'cli-progress';

/** How far a file's download has come. */
export interface DownloadProgress {
  /** The file in the repository (`model.safetensors`). */
  file: string;
  /** Bytes received so far. */
  bytes: number;
  /** The file's size in bytes. */
  total: number;
  /** Set while this process waits for another's transfer of the file: who holds it (said once, after 10 s). */
  waitingFor?: string;
}

/** `'auto'` (default): a bar on stderr on a TTY; `true` / `false`: always / never; a function: called instead. */
export type ProgressOption = boolean | 'auto' | ((progress: DownloadProgress) => void);

/** Receives one file's progress at a time. */
export interface ProgressSink {
  /** This process has waited a while for another's transfer of `file`, held as `holder` says. */
  waiting(file: string, total: number, holder: string): void;
  start(file: string, total: number): void;
  update(bytes: number): void;
  stop(): void;
}

const MB = 1e6;
/** Files smaller than this get no bar (a config.json is done before a bar could be read). */
const BAR_FROM_BYTES = MB;

const thrownByCallback = new WeakSet<object>();

/** Whether `error` is one the caller's progress callback threw: the download rejects with it as it is. */
export function isProgressCallbackError(error: unknown): boolean {
  return typeof error === 'object' && error !== null && thrownByCallback.has(error);
}

/** The sink `option` asks for: a callback, a cli-progress bar, or nothing. */
export function progressSink(option: ProgressOption = 'auto', label: string): ProgressSink {
  if (typeof option === 'function') {
    let current = { file: '', bytes: 0, total: 0 };
    const report = (progress: DownloadProgress) => {
      try {
        option(progress);
      } catch (error) {
        if (typeof error === 'object' && error !== null) thrownByCallback.add(error);
        throw error;
      }
    };
    return {
      waiting: (file, total, holder) => report({ file, bytes: 0, total, waitingFor: holder }),
      start: (file, total) => {
        current = { file, bytes: 0, total };
        report({ ...current });
      },
      update: (bytes) => {
        current.bytes = bytes;
        report({ ...current });
      },
      stop: () => {},
    };
  }
  if (option === false || (option === 'auto' && process.stderr.isTTY !== true)) {
    return { waiting: () => {}, start: () => {}, update: () => {}, stop: () => {} };
  }
  let bar: SingleBar | undefined;
  return {
    waiting: (file, _total, holder) => process.stderr.write(`${label} ${file}: waiting, ${holder}\n`),
    start: (file, total) => {
      if (total < BAR_FROM_BYTES) return;
      bar = new SingleBar({
        stream: process.stderr,
        format: `${label} ${file} [{bar}] {percentage}% {mb}/{totalMb} MB`,
        fps: 5,
      });
      bar.start(total, 0, { mb: '0.0', totalMb: (total / MB).toFixed(1) });
    },
    update: (bytes) => bar?.update(bytes, { mb: (bytes / MB).toFixed(1) }),
    stop: () => {
      bar?.stop();
      bar = undefined;
    },
  };
}
