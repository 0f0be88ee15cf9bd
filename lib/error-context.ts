import { PaceError, paceError, PaceFileError, PaceNotFoundError } from './errors';

/** A PaceError subclass, as `new Class(message, { cause })` builds it. */
export type PaceErrorClass = new (message: string, options?: { cause?: unknown }) => PaceError;

/**
 * `message` (which puts `cause`'s own message in context, e.g. naming the file) as an error of the same kind as
 * `cause`: a PaceError keeps its code, a missing file (Node's ENOENT) is a PaceNotFoundError, anything else is a
 * `Fallback`. `cause` is kept as the new error's cause.
 */
export function withContext(cause: unknown, message: string, Fallback: PaceErrorClass = PaceFileError): PaceError {
  if (cause instanceof PaceError) {
    const error = paceError(cause.code, message);
    Object.defineProperty(error, 'cause', { value: cause, writable: true, configurable: true });
    return error;
  }
  const missing = (cause as { code?: unknown } | null | undefined)?.code === 'ENOENT';
  return new (missing ? PaceNotFoundError : Fallback)(message, { cause });
}
