/**
 * Every error pace-peft raises on purpose is a {@link PaceError} with a stable `code`, from the TypeScript layer
 * and from the native core alike (the addon builds its errors with {@link paceError}). Catch by class
 * (`instanceof PaceFileError`) or by code (`error.code === 'PACE_INVALID_FILE'`); messages may change, codes do not.
 */
export const PACE_ERROR_CODES = [
  'PACE_INVALID_OPTION',
  'PACE_INVALID_INPUT',
  'PACE_SHAPE_MISMATCH',
  'PACE_INVALID_FILE',
  'PACE_NOT_FOUND',
  'PACE_INVALID_STATE',
  'PACE_BUSY',
  'PACE_DIVERGED',
  'PACE_UNSUPPORTED',
  'PACE_NETWORK',
  'PACE_DISTRIBUTED',
  'PACE_WRITE_FAILED',
  'PACE_INTERNAL',
] as const;

export type PaceErrorCode = (typeof PACE_ERROR_CODES)[number];

/** The base class: `code` says what kind of failure it is. */
export class PaceError extends Error {
  readonly code: PaceErrorCode;

  constructor(code: PaceErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.name = new.target.name;
  }
}

/** An option or argument outside what the function accepts (a bad name, a negative rate, an unknown key). */
export class PaceOptionError extends PaceError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('PACE_INVALID_OPTION', message, options);
  }
}

/** Data with the right shape but wrong values: labels out of range, a non-finite value, an empty dataset. */
export class PaceInputError extends PaceError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('PACE_INVALID_INPUT', message, options);
  }
}

/** A tensor, image or checkpoint entry whose shape or dtype does not fit where it is used. */
export class PaceShapeError extends PaceError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('PACE_SHAPE_MISMATCH', message, options);
  }
}

/** A file that is corrupt, truncated, of another format or made for another model. */
export class PaceFileError extends PaceError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('PACE_INVALID_FILE', message, options);
  }
}

/** A file, folder, image or model name that does not exist. */
export class PaceNotFoundError extends PaceError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('PACE_NOT_FOUND', message, options);
  }
}

/** A call that the object's current state does not allow (disposed, not adapted yet, adapted already). */
export class PaceStateError extends PaceError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('PACE_INVALID_STATE', message, options);
  }
}

/** The model is in use by a running fit, forward or load; wait for it. */
export class PaceBusyError extends PaceError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('PACE_BUSY', message, options);
  }
}

/** Training produced a non-finite loss. */
export class PaceDivergedError extends PaceError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('PACE_DIVERGED', message, options);
  }
}

/** What this build, device or platform cannot do (CUDA without a GPU, a dtype a file format lacks). */
export class PaceUnsupportedError extends PaceError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('PACE_UNSUPPORTED', message, options);
  }
}

/**
 * A download that could not be done: the server could not be reached or stopped answering, refused access (401/403:
 * a gated or private repository, a missing or refused token), answered with an error, or offline mode
 * (`HF_HUB_OFFLINE=1`) forbids the request a file missing from the cache needs.
 */
export class PaceNetworkError extends PaceError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('PACE_NETWORK', message, options);
  }
}

/**
 * A collective operation across processes failed (data-parallel training): another rank died, stopped answering
 * within the timeout, or the ranks disagreed (a different world size, a checkpoint of another run).
 */
export class PaceDistributedError extends PaceError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('PACE_DISTRIBUTED', message, options);
  }
}

/**
 * A file that could not be written: the disk full, a read-only file system, a refused permission (the message
 * names the file and the system's reason). Not a damaged file: the file it would have replaced is as it was.
 */
export class PaceWriteError extends PaceError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('PACE_WRITE_FAILED', message, options);
  }
}

/** A failure pace-peft did not anticipate (libtorch's own error text is kept in the message). */
export class PaceInternalError extends PaceError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('PACE_INTERNAL', message, options);
  }
}

const classByCode: Record<PaceErrorCode, new (message: string) => PaceError> = {
  PACE_INVALID_OPTION: PaceOptionError,
  PACE_INVALID_INPUT: PaceInputError,
  PACE_SHAPE_MISMATCH: PaceShapeError,
  PACE_INVALID_FILE: PaceFileError,
  PACE_NOT_FOUND: PaceNotFoundError,
  PACE_INVALID_STATE: PaceStateError,
  PACE_BUSY: PaceBusyError,
  PACE_DIVERGED: PaceDivergedError,
  PACE_UNSUPPORTED: PaceUnsupportedError,
  PACE_NETWORK: PaceNetworkError,
  PACE_DISTRIBUTED: PaceDistributedError,
  PACE_WRITE_FAILED: PaceWriteError,
  PACE_INTERNAL: PaceInternalError,
};

/** The error of the class that `code` names (an unknown code, which would be a bug, gives a PaceInternalError). */
export function paceError(code: string, message: string): PaceError {
  const ErrorClass = classByCode[code as PaceErrorCode] ?? PaceInternalError;
  return new ErrorClass(message);
}
