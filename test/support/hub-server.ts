import crypto from 'node:crypto';
import http from 'node:http';

import { freePort } from './ports';
import { listen } from './serve';

/** One repository the fake Hub serves. */
export interface FakeRepo {
  /** Its files by path. `.safetensors`, `.npz` and `.bin` files are LFS files (served through a CDN redirect). */
  files: Record<string, Buffer>;
  /** The commit `main` points at (default: derived from the repository's name). */
  commit?: string;
  /** A gated repository: files need `Authorization: Bearer <token>` (401 GatedRepo otherwise). */
  token?: string;
}

/**
 * A fault the CDN injects into the full transfer of one blob (by its SHA-256); `truncate-always` into the requests
 * for a part of it too (each sends half of what it announces, then drops the connection), `truncate-then-forbid`
 * refuses them (403), `stall-always` stalls them too; `cut-at-end` sends every byte unannounced (chunked) and drops
 * the connection before the end. The `-stall` refusals send their 403's headers and then nothing more.
 */
export type Fault =
  | 'truncate'
  | 'truncate-always'
  | 'truncate-then-forbid'
  | 'cut-at-end'
  | 'corrupt'
  | 'stall'
  | 'stall-always'
  | 'drip'
  | 'refuse'
  | 'forbid'
  | 'forbid-stall'
  | 'truncate-then-forbid-stall'
  | 'flood'
  | 'unreachable';

/** One request the fake Hub received. */
export interface SeenRequest {
  method: string;
  path: string;
  authorization?: string;
  range?: string;
}

export interface FakeHub {
  url: string;
  repos: Map<string, FakeRepo>;
  requests: SeenRequest[];
  /** The bytes each flooded answer (floodApi, the flood fault) had sent when it ended. */
  flooded: number[];
  faults: Map<string, Fault>;
  /** Full CDN transfers wait until this many are waiting (two concurrent downloads overlap for sure). */
  barrier: number;
  /** The model API answers with its headers and the start of its JSON, then goes silent. */
  stallApi: boolean;
  /** The next this-many model API requests are answered 429 (rate limited) with `Retry-After: 0`. */
  busyApi: number;
  /** The model API answers with JSON that does not end (until 256 MiB, or until the client hangs up). */
  floodApi: boolean;
  /**
   * A mirror that ignores `Range` (a plain static server, a proxy cache): file and CDN requests are answered 200 with
   * the whole body and no `Content-Range`, whatever range they ask for.
   */
  ignoreRange: boolean;
  /** Rewrites each `paths-info` entry before it is sent (a server that leaves out or garbles a field). */
  rewritePathsInfo?: (entry: Record<string, unknown>) => Record<string, unknown>;
  close(): Promise<void>;
}

const sha256 = (data: Buffer) => crypto.createHash('sha256').update(data).digest('hex');
/** git's blob id: SHA-1 of `blob <size>\0` and the bytes. */
export const gitBlobId = (data: Buffer) =>
  crypto.createHash('sha1').update(`blob ${data.length}\0`).update(data).digest('hex');
export const commitOf = (repo: string, fake?: FakeRepo) =>
  fake?.commit ?? crypto.createHash('sha1').update(`commit of ${repo}`).digest('hex');
/** The query of the CDN links the fake Hub redirects to: the real Hub's are signed, a secret until they expire. */
export const CDN_SIGNATURE = 'Expires=4102444800&Signature=secret-cdn-signature&Key-Pair-Id=K2';

const isLfs = (file: string) => /\.(safetensors|npz|bin)$/.test(file);

/** Sends `data` in `slices` writes `intervalMs` apart, then ends the answer (stops if the client hangs up). */
function drip(response: http.ServerResponse, data: Buffer, slices: number, intervalMs: number): void {
  const size = Math.ceil(data.length / slices);
  let offset = 0;
  const next = () => {
    if (response.destroyed) return;
    if (offset >= data.length) return void response.end();
    response.write(data.subarray(offset, offset + size));
    offset += size;
    setTimeout(next, intervalMs).unref();
  };
  next();
}

function json(response: http.ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}) {
  response.writeHead(status, { 'content-type': 'application/json', ...headers });
  response.end(JSON.stringify(body));
}

/**
 * Answers `status` with a body that does not end: 1 MiB chunks as fast as the client takes them, until it hangs up
 * or 256 MiB have gone. Resolves to the bytes sent.
 */
function flood(response: http.ServerResponse, status: number, contentType: string): Promise<number> {
  response.writeHead(status, { 'content-type': contentType });
  const chunk = Buffer.alloc(2 ** 20, ' ');
  let sent = 0;
  return new Promise((resolve) => {
    const more = () => {
      while (!response.destroyed && sent < 256 * 2 ** 20) {
        sent += chunk.length;
        if (!response.write(chunk)) return void response.once('drain', more);
      }
      response.end();
      resolve(sent);
    };
    response.on('close', () => resolve(sent));
    response.write(contentType === 'application/json' ? '[' : '');
    more();
  });
}

function fail(response: http.ServerResponse, status: number, code: string, message: string) {
  json(response, status, { error: message }, { 'x-error-code': code });
}

/** Sends `data` (or the part a `Range: bytes=a-b` asks for, unless `ignoreRange`), with `headers`. */
function sendBytes(
  request: http.IncomingMessage,
  response: http.ServerResponse,
  data: Buffer,
  headers: Record<string, string>,
  ignoreRange = false,
): void {
  const range = /^bytes=(\d+)-(\d*)$/.exec(request.headers.range ?? '');
  if (range && !ignoreRange) {
    const start = Number(range[1]);
    const end = Math.min(range[2] ? Number(range[2]) : data.length - 1, data.length - 1);
    response.writeHead(206, {
      ...headers,
      'content-range': `bytes ${start}-${end}/${data.length}`,
      'content-length': String(end - start + 1),
    });
    response.end(request.method === 'HEAD' ? undefined : data.subarray(start, end + 1));
    return;
  }
  response.writeHead(200, {
    ...headers,
    'content-length': String(data.length),
    ...(ignoreRange ? {} : { 'accept-ranges': 'bytes' }),
  });
  response.end(request.method === 'HEAD' ? undefined : data);
}

/**
 * A local stand-in for the Hugging Face Hub, serving the endpoints @huggingface/hub calls: the model API
 * (`GET /api/models/{repo}/revision/{rev}`, `POST /api/models/{repo}/paths-info/{rev}`), file resolution
 * (`GET|HEAD /{repo}/resolve/{rev}/{path}`: small files directly with `ETag` = git blob id, LFS files as a 302 to
 * the CDN with `X-Linked-Etag` = SHA-256 and `X-Linked-Size`, both with `X-Repo-Commit`), and the CDN (`GET
 * /cdn/{sha256}` at http://localhost:<port>, another origin than the Hub's 127.0.0.1, ranges honoured unless
 * `ignoreRange`). Errors carry the Hub's `X-Error-Code`s (RepoNotFound, RevisionNotFound, EntryNotFound, GatedRepo).
 * Listens on 127.0.0.1 and closes itself after `lifetimeMs` (a safety net for a test that fails before closing it,
 * well beyond a test file's run: hub.test.ts serves its whole file from one; the timer is unref'd, so it never holds
 * the process).
 */
export async function startFakeHub(repos: Record<string, FakeRepo>, lifetimeMs = 10 * 60_000): Promise<FakeHub> {
  const hub = {
    repos: new Map(Object.entries(repos)),
    requests: [] as SeenRequest[],
    faults: new Map<string, Fault>(),
    barrier: 1,
    stallApi: false,
    busyApi: 0,
    floodApi: false,
    ignoreRange: false,
    flooded: [] as number[],
    rewritePathsInfo: undefined as FakeHub['rewritePathsInfo'],
  };
  const blobs = () => {
    const found = new Map<string, Buffer>();
    for (const repo of hub.repos.values()) for (const data of Object.values(repo.files)) found.set(sha256(data), data);
    return found;
  };
  const waiting: (() => void)[] = [];

  const server = http.createServer((request, response) => {
    const url = new URL(request.url ?? '/', 'http://localhost');
    const path = decodeURIComponent(url.pathname);
    hub.requests.push({
      method: request.method ?? '',
      path,
      authorization: request.headers.authorization,
      range: request.headers.range,
    });
    request.resume();

    const api = /^\/api\/models\/([^/]+\/[^/]+)\/(revision|paths-info)\/(.+)$/.exec(path);
    const resolve = /^\/([^/]+\/[^/]+)\/resolve\/([^/]+)\/(.+)$/.exec(path);
    const cdn = /^\/cdn\/([0-9a-f]{64})$/.exec(path);
    const repoName = api?.[1] ?? resolve?.[1];
    const revision = api?.[3] ?? resolve?.[2];
    if (repoName !== undefined && revision !== undefined) {
      const repo = hub.repos.get(repoName);
      if (!repo) {
        // as the Hub: 401 to anonymous callers (the repository may be private), 404 to authenticated ones
        fail(response, request.headers.authorization ? 404 : 401, 'RepoNotFound', 'Repository not found');
        return;
      }
      const commit = commitOf(repoName, repo);
      if (revision !== 'main' && revision !== commit) {
        fail(response, 404, 'RevisionNotFound', `Invalid rev id: ${revision}`);
        return;
      }
      if (api && hub.floodApi) {
        void flood(response, 200, 'application/json').then((sent) => hub.flooded.push(sent));
        return;
      }
      if (api && hub.busyApi > 0) {
        hub.busyApi--;
        response.writeHead(429, { 'retry-after': '0', 'content-type': 'text/plain' });
        response.end('rate limited');
        return;
      }
      if (api && hub.stallApi) {
        response.writeHead(200, { 'content-type': 'application/json' });
        response.write(api[2] === 'revision' ? '{"sha":' : '[');
        return;
      }
      if (api?.[2] === 'revision') {
        json(response, 200, {
          _id: repoName,
          id: repoName,
          sha: commit,
          private: false,
          gated: repo.token ? 'manual' : false,
          downloads: 0,
          likes: 0,
          lastModified: '2024-01-01T00:00:00.000Z',
          pipeline_tag: 'image-classification',
          siblings: Object.keys(repo.files).map((rfilename) => ({ rfilename })),
        });
        return;
      }
      if (api?.[2] === 'paths-info') {
        let body = '';
        request.setEncoding('utf8');
        request.on('data', (chunk: string) => (body += chunk));
        request.on('end', () => {
          const { paths } = JSON.parse(body) as { paths: string[] };
          json(
            response,
            200,
            paths
              .filter((file) => repo.files[file] !== undefined)
              .map((file) => {
                const data = repo.files[file];
                const entry = {
                  type: 'file',
                  path: file,
                  size: data.length,
                  oid: gitBlobId(isLfs(file) ? Buffer.from(`lfs pointer of ${file}`) : data),
                  ...(isLfs(file) ? { lfs: { oid: sha256(data), size: data.length, pointerSize: 134 } } : {}),
                };
                return hub.rewritePathsInfo ? hub.rewritePathsInfo(entry) : entry;
              }),
          );
        });
        return;
      }
      const file = resolve?.[3] ?? '';
      if (repo.token && request.headers.authorization !== `Bearer ${repo.token}`) {
        fail(response, 401, 'GatedRepo', `Access to model ${repoName} is restricted. You must have access to it.`);
        return;
      }
      const data = repo.files[file];
      if (!data) {
        fail(response, 404, 'EntryNotFound', `${file} does not exist`);
        return;
      }
      if (isLfs(file)) {
        response.writeHead(302, {
          // on another origin, as the Hub's CDN is (so fetch drops the Authorization header on the way)
          location: `${hub.faults.get(sha256(data)) === 'unreachable' ? deadOrigin : cdnOrigin}/cdn/${sha256(data)}?${CDN_SIGNATURE}`,
          'x-repo-commit': commit,
          'x-linked-etag': `"${sha256(data)}"`,
          'x-linked-size': String(data.length),
          etag: `"${gitBlobId(Buffer.from(`lfs pointer of ${file}`))}"`,
        });
        response.end();
        return;
      }
      sendBytes(request, response, data, { 'x-repo-commit': commit, etag: `"${gitBlobId(data)}"` }, hub.ignoreRange);
      return;
    }
    if (cdn) {
      const data = blobs().get(cdn[1]);
      if (!data) {
        response.writeHead(404);
        response.end();
        return;
      }
      // As the Hub's CDN answers: it says it caches.
      const cdnHeaders = { etag: '"cdn-etag"', 'x-cache': 'Hit from cloudfront' };
      const part = /^bytes=(\d+)-(\d*)$/.exec(request.headers.range ?? '');
      const partFault = hub.faults.get(cdn[1]);
      if (part && (partFault === 'truncate-always' || partFault === 'stall-always') && !hub.ignoreRange) {
        const start = Number(part[1]);
        const end = Math.min(part[2] ? Number(part[2]) : data.length - 1, data.length - 1);
        response.writeHead(206, {
          'content-range': `bytes ${start}-${end}/${data.length}`,
          'content-length': String(end - start + 1),
        });
        const half = data.subarray(start, start + Math.max(1, (end - start + 1) >> 1));
        response.write(half, () => {
          if (partFault === 'truncate-always') setTimeout(() => response.socket?.destroy(), 20);
        });
        return;
      }
      if (part && hub.faults.get(cdn[1]) === 'truncate-then-forbid') {
        response.writeHead(403, { 'content-type': 'text/plain' });
        response.end('forbidden');
        return;
      }
      if (part && hub.faults.get(cdn[1]) === 'truncate-then-forbid-stall') {
        response.writeHead(403, { 'content-type': 'text/plain' });
        response.write('forbid');
        return;
      }
      if (request.headers.range) {
        sendBytes(request, response, data, cdnHeaders, hub.ignoreRange);
        return;
      }
      const serve = () => {
        const fault = hub.faults.get(cdn[1]);
        if (fault === undefined) {
          sendBytes(request, response, data, cdnHeaders);
          return;
        }
        if (fault === 'flood') {
          // an error page that never ends
          void flood(response, 503, 'text/html').then((sent) => hub.flooded.push(sent));
          return;
        }
        if (fault === 'cut-at-end') {
          response.writeHead(200, cdnHeaders);
          response.write(data, () => setTimeout(() => response.socket?.destroy(), 20));
          return;
        }
        if (fault === 'forbid') {
          // a signed link that expired, or a proxy refusing the CDN's host
          response.writeHead(403, { 'content-type': 'text/plain' });
          response.end('forbidden');
          return;
        }
        if (fault === 'forbid-stall') {
          // a refusal whose body never ends (a proxy holding the connection)
          response.writeHead(403, { 'content-type': 'text/plain' });
          response.write('forbid');
          return;
        }
        if (fault === 'refuse') {
          // the size probe succeeded; the full transfer is refused (an expired signed URL, an overloaded CDN)
          response.writeHead(503, { 'content-type': 'text/plain' });
          response.end('unavailable');
          return;
        }
        if (fault === 'corrupt') {
          const copy = Buffer.from(data);
          copy[copy.length >> 1] ^= 0xff;
          sendBytes(request, response, copy, cdnHeaders);
          return;
        }
        // truncate / stall / drip: announce every byte, send half, then drop the connection, go silent, or send
        // the rest in 40 slices 25 ms apart (a second's transfer at its own pace)
        response.writeHead(200, { 'content-length': String(data.length) });
        response.write(data.subarray(0, data.length >> 1), () => {
          if (fault === 'truncate' || fault === 'truncate-always' || fault.startsWith('truncate-then-forbid'))
            setTimeout(() => response.socket?.destroy(), 20);
          if (fault === 'drip') drip(response, data.subarray(data.length >> 1), 40, 25);
        });
      };
      waiting.push(serve);
      if (waiting.length >= hub.barrier) {
        for (const go of waiting.splice(0)) go();
      } else {
        setTimeout(() => {
          for (const go of waiting.splice(0)) go();
        }, 10_000).unref();
      }
      return;
    }
    response.writeHead(404);
    response.end();
  });
  const url = await listen(server);
  const cdnOrigin = url.replace('127.0.0.1', 'localhost');
  // A CDN that refuses connections (the 'unreachable' fault): a port nothing listens on, drawn below the kernel's
  // ephemeral range so that no listen(0) or outgoing connection on the machine is handed it meanwhile.
  const deadOrigin = `http://127.0.0.1:${await freePort()}`;
  const close = () =>
    new Promise<void>((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    });
  const lifetime = setTimeout(() => void close(), lifetimeMs);
  lifetime.unref();
  return {
    url,
    ...hub,
    get barrier() {
      return hub.barrier;
    },
    set barrier(count: number) {
      hub.barrier = count;
    },
    get stallApi() {
      return hub.stallApi;
    },
    get busyApi() {
      return hub.busyApi;
    },
    set busyApi(count: number) {
      hub.busyApi = count;
    },
    set stallApi(stall: boolean) {
      hub.stallApi = stall;
    },
    get floodApi() {
      return hub.floodApi;
    },
    set floodApi(flood: boolean) {
      hub.floodApi = flood;
    },
    get ignoreRange() {
      return hub.ignoreRange;
    },
    get rewritePathsInfo() {
      return hub.rewritePathsInfo;
    },
    set rewritePathsInfo(rewrite: FakeHub['rewritePathsInfo']) {
      hub.rewritePathsInfo = rewrite;
    },
    set ignoreRange(ignore: boolean) {
      hub.ignoreRange = ignore;
    },
    close: async () => {
      clearTimeout(lifetime);
      if (server.listening) await close();
    },
  };
}
