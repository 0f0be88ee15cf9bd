import { downloadFile, modelInfo, pathsInfo } from '@huggingface/hub';

import { PaceFileError } from '../errors';
import type { HubSettings } from './settings';
import { withoutUrlQueries } from './failures';

/** A file of a repository at one commit, as the Hub describes it (`paths-info`). */
export interface RemoteFile {
  path: string;
  size: number;
  /** Its name in `blobs/`: the SHA-256 of an LFS file, else its git object id (as huggingface_hub names blobs). */
  etag: string;
  /** The SHA-256 the bytes must have (LFS files). */
  sha256?: string;
  /** The git blob id the bytes must have (small files kept in git). */
  gitOid?: string;
}

/**
 * Every limit on a transfer (the config's 1 MiB, "more than the Hub announced", the truncation check) compares
 * with the size `paths-info` announces: a server that leaves it out, or gives something other than a byte count,
 * would switch them all off and stream its body until the disk is full.
 */
function checkAnnouncedSize(repo: string, file: string, size: unknown, lfsSize: unknown): void {
  const isByteCount = (value: unknown) => typeof value === 'number' && Number.isSafeInteger(value) && value >= 0;
  if (!isByteCount(size)) {
    throw new PaceFileError(
      `${repo}'s ${file}: the Hub's paths-info gave its size as ${JSON.stringify(size) ?? 'nothing'}, not a byte count; nothing was downloaded`,
    );
  }
  if (lfsSize !== undefined && lfsSize !== size) {
    throw new PaceFileError(
      `${repo}'s ${file}: the Hub's paths-info gave it ${String(size)} bytes but its LFS entry ${JSON.stringify(lfsSize)}; nothing was downloaded`,
    );
  }
}

/** The last answer the Hub gave, kept for error messages (the library's errors drop the headers). */
export interface LastResponse {
  url: string;
  status: number;
  /** huggingface_hub's `X-Error-Code`: RepoNotFound, RevisionNotFound, EntryNotFound, GatedRepo, ... */
  errorCode?: string;
  /** The part of the file a 206 answer holds (`bytes 100-199/200`). */
  contentRange?: string;
}

const HEX = /^[0-9a-f]+$/;

/**
 * The most an answer read whole may hold: an API answer (a commit, a few files' sizes and hashes: kilobytes) or an
 * error's body. A server sending more (a mirror answering with something else, a hostile one) would otherwise be
 * buffered into memory until the process ran out of it.
 */
export const MAX_ANSWER_BYTES = 16 * 2 ** 20;

/** How often a request answered 429 or 503 is asked again. */
const BUSY_RETRIES = 4;
/** The longest wait between two tries, whatever Retry-After says. */
const MAX_BUSY_WAIT_MS = 30_000;

/** The wait a busy answer asks for: its Retry-After (seconds or a date), else 1, 2, 4, 8 s. */
function retryAfterMs(header: string | null, attempt: number): number {
  const seconds = Number(header);
  const asked =
    header !== null && header.trim() !== '' && Number.isFinite(seconds)
      ? seconds * 1000
      : header !== null && !Number.isNaN(Date.parse(header))
        ? Date.parse(header) - Date.now()
        : 1000 * 2 ** attempt;
  return Math.min(MAX_BUSY_WAIT_MS, Math.max(0, asked));
}

/** Waits `ms`, or rejects with the signal's reason once it stops. */
export function waitOrStop(ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) {
      reject(signal.reason);
      return;
    }
    const stop = () => {
      clearTimeout(timer);
      reject(signal?.reason);
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', stop);
      resolve();
    }, ms);
    signal?.addEventListener('abort', stop, { once: true });
  });
}

/**
 * `response` with its body cut off after `limit` bytes: reading on fails with an error naming the URL, and `abort`
 * ends the request.
 */
function withBodyLimit(response: Response, limit: number, abort: (reason: Error) => void): Response {
  // A Response cannot be made with a status outside 200-599, which fetch passes on (the library names it).
  if (!response.body || response.status < 200 || response.status > 599) return response;
  let received = 0;
  const limited = response.body.pipeThrough(
    new TransformStream<Uint8Array, Uint8Array>({
      transform(chunk, controller) {
        received += chunk.byteLength;
        if (received > limit) {
          // Named by hubFailure with the model and file, as a stall is.
          const error = new Error(
            `the answer from ${withoutUrlQueries(response.url)} is larger than ${limit / 2 ** 20} MiB, more than a Hub answer holds ` +
              '(is the endpoint a Hub?)',
          );
          abort(error);
          controller.error(error);
          return;
        }
        controller.enqueue(chunk);
      },
    }),
  );
  const { status, statusText, headers } = response;
  const copy = new Response(limited, { status, statusText, headers });
  // The library names the URL in its errors; a constructed Response has none of its own.
  Object.defineProperty(copy, 'url', { value: response.url });
  return copy;
}

/**
 * The Hub calls pace-peft makes, all through @huggingface/hub: the commit a revision points at
 * (`GET /api/models/{repo}/revision/{revision}`), the files' sizes and hashes (`POST
 * /api/models/{repo}/paths-info/{commit}`), and a file's bytes (`GET /{repo}/resolve/{commit}/{path}`, whole,
 * following redirects). Every request goes through {@link HubClient.fetch},
 * which gives up on a server that sends no answer within the stall timeout and remembers the last answer.
 */
export class HubClient {
  readonly #settings: HubSettings;
  readonly #stallMs: number;
  readonly #stop?: AbortSignal;
  /** Where the API's URLs begin, as a parsed request URL spells it (case, default port and slashes normalised). */
  readonly #apiPrefix: string;
  /** The last answer received (its status and X-Error-Code), for error messages. */
  last?: LastResponse;
  /**
   * Why the last request got no answer (refused, reset, a name that does not resolve), with its causes: the
   * library's file stream passes on the message alone ("fetch failed").
   */
  failure?: unknown;

  /** `stop` ends every request of this client, the bodies being read included. */
  constructor(settings: HubSettings, stallMs: number, stop?: AbortSignal) {
    this.#settings = settings;
    this.#stallMs = stallMs;
    this.#stop = stop;
    this.#apiPrefix = new URL('api/', `${settings.endpoint}/`).href;
  }

  /**
   * `fetch` for the library: the headers must arrive within the stall timeout, and an API answer's (small JSON) or
   * an error's body within another; a file's body is watched by its reader. The token goes to the endpoint only: the library
   * sends it on to a CDN it was redirected to when the CDN says it caches (`X-Cache`), and it is taken off there.
   */
  readonly fetch: typeof fetch = async (input, init) => {
    // A busy Hub (429, or a 503 naming when to come back) is asked again after the wait it names (Retry-After),
    // as huggingface_hub backs off: API calls only, whose bodies (none, or JSON text) can be sent again. A file's
    // transfer runs behind a stream whose reader counts the wait as the server's silence; its own resumes serve it.
    const url = new URL(input instanceof Request ? input.url : input);
    const resendable = !(input instanceof Request) && (init?.body == null || typeof init.body === 'string');
    const retried = url.href.startsWith(this.#apiPrefix) && resendable;
    for (let attempt = 0; ; attempt++) {
      const response = await this.#fetchOnce(input, init);
      const busy = response.status === 429 || (response.status === 503 && response.headers.get('retry-after') !== null);
      if (!busy || !retried || attempt >= BUSY_RETRIES) return response;
      await response.body?.cancel().catch(() => {});
      await waitOrStop(retryAfterMs(response.headers.get('retry-after'), attempt), init?.signal ?? this.#stop);
      this.last = undefined; // (a retry that gets no answer must not be described by this one)
    }
  };

  readonly #fetchOnce: typeof fetch = async (input, init) => {
    const controller = new AbortController();
    const stalled = (what: string) => () => controller.abort(new Error(`no ${what} within ${this.#stallMs / 1000} s`));
    let timer = setTimeout(stalled('answer'), this.#stallMs);
    const signals = [init?.signal, this.#stop, controller.signal].filter((s): s is AbortSignal => s != null);
    const signal = AbortSignal.any(signals);
    const url = new URL(input instanceof Request ? input.url : input);
    const headers = new Headers(init?.headers ?? (input instanceof Request ? input.headers : undefined));
    if (url.origin !== new URL(this.#settings.endpoint).origin) headers.delete('authorization');
    let response: Response;
    this.failure = undefined;
    try {
      response = await fetch(input, { ...init, headers, signal });
    } catch (error) {
      this.failure = error;
      throw error;
    } finally {
      clearTimeout(timer);
    }
    this.last = {
      url: response.url,
      status: response.status,
      errorCode: response.headers.get('x-error-code') ?? undefined,
      contentRange: response.headers.get('content-range') ?? undefined,
    };
    // A file's body is checked against its announced size as it arrives; what is read whole (an API answer, an
    // error's text) is bounded here, in size and in time (a stalled one would hold its connection open).
    if (!url.href.startsWith(this.#apiPrefix) && response.ok) return response;
    // Aborting once the body has been read changes nothing, so the timer is only kept from holding the process.
    timer = setTimeout(stalled('complete answer'), this.#stallMs);
    timer.unref();
    return withBodyLimit(response, MAX_ANSWER_BYTES, (reason) => controller.abort(reason));
  };

  get #credentials() {
    return { hubUrl: this.#settings.endpoint, accessToken: this.#settings.token, fetch: this.fetch };
  }

  /** The commit `revision` points at now. */
  async commitOf(repo: string, revision: string): Promise<string> {
    const info = await modelInfo({ ...this.#credentials, name: repo, revision, additionalFields: ['sha'] });
    return info.sha;
  }

  /** The files among `paths` that the repository holds at `commit`, by path. */
  async files(repo: string, commit: string, paths: string[]): Promise<Map<string, RemoteFile>> {
    const entries = await pathsInfo({
      ...this.#credentials,
      repo: { type: 'model', name: repo },
      paths,
      revision: commit,
    });
    const files = new Map<string, RemoteFile>();
    for (const entry of entries) {
      if (entry.type !== 'file' || !paths.includes(entry.path)) continue;
      const sha256 = entry.lfs?.oid;
      checkAnnouncedSize(repo, entry.path, entry.size, entry.lfs?.size);
      files.set(entry.path, {
        path: entry.path,
        size: entry.size,
        etag: sha256 ?? entry.oid ?? '',
        sha256,
        gitOid: sha256 ? undefined : entry.oid,
      });
    }
    return files;
  }

  /**
   * The bytes of `file` at `commit`, streamed (a 404 comes out of the stream's first read). The size comes from `paths-info`
   * ({@link files}), not from the library's `fileDownloadInfo` probe (`Range: bytes=0-0`, which needs a
   * `Content-Range` in the answer): a mirror (HF_ENDPOINT) that ignores `Range` answers it with the whole file and
   * no `Content-Range`, and the probe failed with "Expected size information". The bytes are checked against that
   * size and the hash from `paths-info` as they arrive (transferToCache); a status error (404, 401, 503) comes out
   * of the stream's first read. From a byte `from` > 0 it asks for the rest alone (`Range: bytes=from-`), which a
   * server may answer whole all the same: the caller checks {@link last}'s status and Content-Range.
   */
  async open(repo: string, commit: string, file: RemoteFile, from = 0): Promise<ReadableStream<Uint8Array> | null> {
    const url = `${this.#settings.endpoint}/${repo}/resolve/${encodeURIComponent(commit)}/${file.path}`;
    const blob = await downloadFile({
      ...this.#credentials,
      repo: { type: 'model', name: repo },
      path: file.path,
      revision: commit,
      downloadInfo: { size: file.size, etag: file.etag, url },
      // the plain bytes (the Hub redirects to its CDN) rather than Xet chunk reconstruction
      xet: false,
    });
    return blob && ((from > 0 ? blob.slice(from) : blob).stream() as ReadableStream<Uint8Array>);
  }
}

/** Whether a value is a well-formed blob name for `file` (so a hostile server cannot name a path). */
export function validEtag(file: RemoteFile): boolean {
  const length = file.sha256 ? 64 : 40;
  return file.etag.length === length && HEX.test(file.etag);
}
