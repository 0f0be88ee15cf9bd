import { withContext } from '../error-context';
import type { PaceError } from '../errors';

const problems: Record<string, string> = {
  ENOENT: 'does not exist',
  EISDIR: 'is a folder, not a file',
  ENOTDIR: 'is not a folder',
  EACCES: 'cannot be read (permission denied)',
};

/**
 * A filesystem error (Node's `ENOENT`, `EISDIR`, ...) as the PaceError its kind calls for, its message naming the
 * file or folder: `IDX file 'x' does not exist` (a PaceNotFoundError), otherwise a PaceFileError.
 */
export function fsError(error: unknown, what: string): PaceError {
  const code = (error as { code?: unknown } | null)?.code;
  const problem = typeof code === 'string' ? problems[code] : undefined;
  return withContext(error, problem ? `${what} ${problem}` : `${what}: ${(error as Error).message}`);
}
