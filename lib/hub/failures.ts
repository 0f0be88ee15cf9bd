import { HubApiError } from '@huggingface/hub';

import { PaceError, PaceNetworkError, PaceNotFoundError, PaceOptionError, PaceWriteError } from '../errors';
import type { LastResponse } from './client';

/** What a failure is about, for its message. */
export interface FailureContext {
  /** The pretrained name as the user gave it. */
  name: string;
  repo: string;
  revision: string;
  endpoint: string;
  /** Whether a token was sent. */
  token: boolean;
  /** The file being fetched, if any. */
  file?: string;
  /** The Hub's last answer. */
  last?: LastResponse;
}

/** The innermost cause's code or message: ECONNREFUSED, ENOTFOUND, "other side closed", ... */
export function rootCause(error: unknown): string {
  let current: unknown = error;
  for (let depth = 0; depth < 5; depth++) {
    const next = (current as { cause?: unknown } | null | undefined)?.cause;
    if (next === undefined || next === null) break;
    current = next;
  }
  if (typeof current === 'string') return current;
  const { code, message } = (current ?? {}) as { code?: unknown; message?: unknown };
  return [typeof code === 'string' ? code : undefined, typeof message === 'string' ? message : undefined]
    .filter((part) => part)
    .join(': ');
}

/** `text` with each URL's query and fragment cut off: a CDN link's query is a signature that fetches the file. */
export function withoutUrlQueries(text: string): string {
  return text.replace(/(\bhttps?:\/\/[^\s?#]*)[?#]\S*/g, '$1');
}

/** The origin a file's answer came from when it is not the endpoint's: the CDN the Hub sent the download to. */
function elsewhere(c: FailureContext): string | undefined {
  if (!c.file || !c.last?.url) return undefined;
  try {
    const origin = new URL(c.last.url).origin;
    return origin === new URL(c.endpoint).origin ? undefined : origin;
  } catch {
    return undefined;
  }
}

function statusFailure(status: number, errorCode: string | undefined, given: string, c: FailureContext): PaceError {
  const detail = withoutUrlQueries(given);
  const what = c.file ? `${c.file} of ${c.repo}` : c.repo;
  const cdn = elsewhere(c);
  const at = `${cdn ?? c.endpoint} (HTTP ${status}${errorCode ? `, ${errorCode}` : ''})`;
  if (cdn && (status === 401 || status === 403)) {
    // The Hub described the file and sent the download on: the token and the repository's gate are not the cause.
    return new PaceNetworkError(
      `pretrained '${c.name}': ${what} was refused at ${at}, where ${c.endpoint} sent its download (a link ` +
        'expired on the way, or a proxy between here and there refuses it); try again, or ask your network admin',
    );
  }
  const repoMissing = errorCode === 'RepoNotFound' || (status === 404 && !c.file && errorCode === undefined);
  if (errorCode === 'RevisionNotFound') {
    return new PaceNotFoundError(`pretrained '${c.name}': ${c.repo} has no revision '${c.revision}' at ${at}`);
  }
  if (repoMissing && (status === 404 || !c.token)) {
    const hint = c.token ? '' : ' (if it is private, set HF_TOKEN)';
    return new PaceNotFoundError(`pretrained '${c.name}': no repository ${c.repo} at ${at}${hint}`);
  }
  if (status === 404 || errorCode === 'EntryNotFound') {
    return new PaceNotFoundError(`pretrained '${c.name}': ${what} not found at ${at}`);
  }
  if (status === 401 || status === 403) {
    const why =
      errorCode === 'GatedRepo'
        ? `${c.repo} is gated: accept its conditions on the Hub, then`
        : `${c.repo} may be gated or private:`;
    const fix = c.token
      ? `${why} check that the token sent (options.token or HF_TOKEN) has access to it`
      : `${why} set HF_TOKEN (or options.token) to a token with access to it`;
    return new PaceNetworkError(`pretrained '${c.name}': access to ${what} refused at ${at}; ${fix}`);
  }
  return new PaceNetworkError(
    `pretrained '${c.name}': ${what} could not be fetched from ${at}${detail ? `: ${detail}` : ''}`,
  );
}

/** The file-system error in `error`'s causes (it names a path and a call: ENOSPC on write, EACCES on mkdir, ...). */
function fileSystemError(error: unknown): NodeJS.ErrnoException | undefined {
  let current: unknown = error;
  for (let depth = 0; depth < 5 && current !== null && typeof current === 'object'; depth++) {
    const { path, syscall } = current as NodeJS.ErrnoException;
    if (typeof path === 'string' && typeof syscall === 'string') return current as NodeJS.ErrnoException;
    current = (current as { cause?: unknown }).cause;
  }
  return undefined;
}

/**
 * A failure of a Hub request as a PaceError naming the model and the cause: a 404 (no such repository, revision or
 * file) is a PaceNotFoundError; 401/403 (gated, private, a refused token), other HTTP errors and an unreachable or
 * silent server are PaceNetworkErrors; the cache's own disk (full, not writable) a PaceWriteError naming the path.
 * PaceErrors pass through.
 */
export function hubFailure(error: unknown, c: FailureContext): PaceError {
  if (error instanceof PaceError) return error;
  const local = fileSystemError(error);
  if (local) {
    const what = c.file ? `${c.file} of ${c.repo}` : c.repo;
    return new PaceWriteError(
      `pretrained '${c.name}': cannot write ${what} into the cache: ${local.code ?? local.syscall} on ${local.path} ` +
        `(${local.message})`,
      { cause: error },
    );
  }
  if (error instanceof HubApiError) {
    return statusFailure(error.statusCode, c.last?.errorCode, error.message, c);
  }
  if (error instanceof TypeError && /access token/i.test(error.message)) {
    return new PaceOptionError(`pretrained '${c.name}': ${error.message}`, { cause: error });
  }
  if (c.last && c.last.status >= 400) return statusFailure(c.last.status, c.last.errorCode, rootCause(error), c);
  const what = c.file ? `${c.file} of ${c.repo}` : c.repo;
  return new PaceNetworkError(
    `pretrained '${c.name}': cannot fetch ${what} from ${c.endpoint}: ${withoutUrlQueries(rootCause(error))}`,
    { cause: error },
  );
}
