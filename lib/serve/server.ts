import http from 'node:http';
import type net from 'node:net';

import { EvalTransformSchema, timmEvalTransform } from '../data/eval-transform';
import { PaceBusyError, PaceOptionError } from '../errors';
import type { Model } from '../models/model';
import { parseOptions } from '../options';
import { Batcher, refuseTrainingMode } from './batcher';
import { imageTypes, UploadDecoder } from './decode';
import { HttpError } from './http-error';
import { ServeOptionsSchema, type ServeOptions } from './options';
import { topIndices } from './ranking';

/** What {@link createInferenceServer} returns. */
export interface InferenceServer {
  /** The server, not yet listening. */
  server: http.Server;
  /** The sizes of the latest batches run (at most 10,000: older ones are dropped), oldest first. */
  batches: number[];
  /** Stops accepting, runs queued requests at once, and resolves when every response is sent. */
  close(): Promise<void>;
}

/** A request target's path: of the origin form (`/predict?x`), or of the absolute form (`http://host/predict`). */
function routeOf(target: string): string {
  if (target.startsWith('/')) return target.split('?')[0];
  try {
    return new URL(target).pathname;
  } catch {
    return target; // no route of ours: a 404
  }
}

/** Whether the request has a body not read to its end. */
function bodyUnread(request: http.IncomingMessage): boolean {
  const declared = request.headers['content-length'] !== undefined && request.headers['content-length'] !== '0';
  return !request.complete && (declared || request.headers['transfer-encoding'] !== undefined);
}

/**
 * Answered before its body was read, a request keeps its connection only if the rest of the body comes soon: Node
 * reads it to its declared end to reach the next request (a terabyte, until the request timeout). Past `limit`
 * more bytes or two seconds, the connection is cut. (Closing at once instead would reset it under a client
 * still sending, whose answer would then be lost.)
 */
function cutUnreadBody(request: http.IncomingMessage, limit: number): void {
  const socket = request.socket as net.Socket | null; // (null once the request has let its connection go)
  if (!socket || socket.destroyed) return;
  const readBefore = socket.bytesRead;
  const deadline = performance.now() + 2_000;
  const watch = setInterval(() => {
    if (request.complete || socket.destroyed) clearInterval(watch);
    else if (socket.bytesRead - readBefore > limit || performance.now() >= deadline) {
      clearInterval(watch);
      socket.destroy();
    }
  }, 50);
  watch.unref();
}

function modelDisposed(): HttpError {
  return new HttpError(503, 'the model was disposed: this server cannot predict any more');
}

/** The declared body length (0 when none); 413 beyond `limit`, before any of the body is read or asked for. */
function declaredLength(request: http.IncomingMessage, limit: number): number {
  const declared = Number(request.headers['content-length'] ?? 0);
  if (declared > limit) throw new HttpError(413, `the image is larger than ${limit} bytes`, { connection: 'close' });
  return declared;
}

/**
 * The request body, at most `limit` bytes (413 beyond). Chunks are copied into one buffer as they arrive: a body
 * sent in many tiny chunks (each a Buffer object of its own) must not hold a heap many times its size, and one
 * that arrives in pieces averaging under 256 bytes after the first thousand is refused as hostile (400).
 */
async function readBody(request: http.IncomingMessage, limit: number): Promise<Buffer> {
  try {
    return await readBodyWithin(request, limit);
  } catch (error) {
    // A connection that went away mid-body (the client's doing, or the request deadline's cut) is not the server
    // failing. Node fails the body's stream with ECONNRESET then; anything else (an allocation that failed) is ours.
    if ((error as NodeJS.ErrnoException | undefined)?.code === 'ECONNRESET') {
      throw new HttpError(499, 'the client closed the connection while sending its body');
    }
    throw error;
  }
}

/** The first allocation for a body declared this long: no more than 1 MiB before the bytes have come. */
const FIRST_BODY_BYTES = 1024 * 1024;

async function readBodyWithin(request: http.IncomingMessage, limit: number): Promise<Buffer> {
  const declared = declaredLength(request, limit);
  // (A declared length is a promise, not bytes: holding all of it for a client that sends nothing would let a few
  // hundred connections pin gigabytes.)
  let body = Buffer.allocUnsafe(Math.min(limit, FIRST_BODY_BYTES, declared > 0 ? declared : 64 * 1024));
  let size = 0;
  let chunks = 0;
  for await (const chunk of request) {
    const piece = chunk as Buffer;
    chunks += 1;
    if (size + piece.length > limit) {
      throw new HttpError(413, `the image is larger than ${limit} bytes`, { connection: 'close' });
    }
    if (chunks > 1024 && (size + piece.length) / chunks < 256) {
      throw new HttpError(400, 'the body arrives in too many tiny pieces', { connection: 'close' });
    }
    if (size + piece.length > body.length) {
      // Doubling, but never past the declared length (Node ends the body there): a 1.1 MiB upload holds 1.1 MiB.
      const ceiling = declared > 0 ? Math.min(limit, declared) : limit;
      const grown = Buffer.allocUnsafe(Math.min(ceiling, Math.max(2 * body.length, size + piece.length)));
      body.copy(grown, 0, 0, size);
      body = grown;
    }
    piece.copy(body, size);
    size += piece.length;
  }
  return body.subarray(0, size);
}

function expectsContinue(request: http.IncomingMessage): boolean {
  return (request.headers.expect ?? '').toLowerCase() === '100-continue';
}

/**
 * An HTTP inference server for a (merged) model: `POST /predict` with a JPEG, PNG or WebP body returns the top-k
 * labels (`options.labels`, else the model's `classNames` as they are at the answer, else class indices) and
 * probabilities; each upload is resized and normalised by `options.transform` (default: timm's evaluation
 * transform for the model); concurrent requests are batched into one forward. The model must be in evaluation
 * mode. `GET /health` reports `{ status, queued, decoding }`: 200 with status 'ok', or 503 with 'closing' once
 * close() has begun (or 'model disposed' once the model is: `/predict` answers 503 then too). Decoding runs in two
 * bounded lanes (small and large images) apart from the forwards, with 503 and Retry-After when a lane's queue is
 * full; Node's own request, header and keep-alive
 * timeouts bound slow clients. A client that half-closes its connection counts as gone (nginx's 499): its request
 * is withdrawn and costs no forward, so one must keep its sending side open until the answer arrives.
 */
export function createInferenceServer(model: Model, options: ServeOptions = {}): InferenceServer {
  const o = parseOptions(ServeOptionsSchema, options, 'options');
  const classes = model.spec.numClasses;
  if (classes < 1) throw new PaceOptionError('the model has no classifier head (numClasses 0): nothing to predict');
  if (o.labels && o.labels.length !== classes) {
    throw new PaceOptionError(`options.labels: ${o.labels.length} labels for a model of ${classes} classes`);
  }
  if (!model.fitLock.held) refuseTrainingMode(model);
  // The model's own names are read at each answer: loadWeights, loadAdapters or resetHead may change them.
  const labelOf = (index: number) => (o.labels ?? model.classNames)?.[index] ?? String(index);
  // the fields given (an explicit undefined is none) over timm's, checked whole
  const given = Object.entries(o.transform ?? {}).filter(([, value]) => value !== undefined);
  const transform = parseOptions(
    EvalTransformSchema,
    { ...timmEvalTransform(model.preprocessing), ...Object.fromEntries(given) },
    'options.transform',
  );
  const batcher = new Batcher({
    model,
    normalization: { mean: transform.mean, std: transform.std },
    maxBatch: o.maxBatch,
    batchWindowMs: o.batchWindowMs,
    maxPending: o.maxPendingPredictions,
    retryAfterSeconds: o.retryAfterSeconds,
    idleReleaseMs: o.idleReleaseMs,
  });
  const decoder = new UploadDecoder({
    maxPixels: o.maxPixels,
    smallPixels: o.smallPixels,
    small: { concurrency: o.smallDecodes, maxQueued: o.maxQueuedSmall },
    large: { concurrency: o.largeDecodes, maxQueued: o.maxQueuedLarge },
    retryAfterSeconds: o.retryAfterSeconds,
    decode: o.decode,
  });
  let closing = false;
  const logToStderr = (what: string, error: unknown) =>
    console.error(
      `pace-peft inference server: ${what}: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`,
    );
  const reportServerError = (error: unknown) => {
    if (!o.onError) return logToStderr('a prediction failed', error);
    try {
      o.onError(error);
    } catch (failure) {
      // An operator's handler that fails must not take the server down, nor hide the error it was told of.
      logToStderr('a prediction failed', error);
      logToStderr('options.onError threw while told of it', failure);
    }
  };
  const send = (response: http.ServerResponse, status: number, body: unknown, headers = {}) => {
    // Counted from when the answer is written: a pipelined request's answer waits for the ones before it, which
    // an earlier cut would lose with the connection.
    if (bodyUnread(response.req)) response.once('finish', () => cutUnreadBody(response.req, o.maxBodyBytes));
    // While closing, no connection is kept for another request: each closes once its answer is sent.
    response.writeHead(status, {
      'content-type': 'application/json',
      ...(closing && { connection: 'close' }),
      ...headers,
    });
    response.end(JSON.stringify(body));
  };
  /** Decodes and predicts within `timeoutMs`; a request given up on (timed out, its client gone) is withdrawn. */
  const predict = async (request: http.IncomingMessage, body: Buffer, type: string): Promise<Float32Array> => {
    let timer: NodeJS.Timeout | undefined;
    let clientGone: (() => void) | undefined;
    let withdraw: (() => void) | undefined;
    const abandon = new AbortController();
    const givenUp = new Promise<never>((_, reject) => {
      const giveUp = (error: HttpError) => {
        abandon.abort(error); // a decode still waiting for its lane leaves it
        reject(error);
      };
      timer = setTimeout(() => giveUp(new HttpError(504, 'the prediction timed out')), o.timeoutMs);
      clientGone = () => giveUp(new HttpError(499, 'the client closed the connection'));
      request.socket.once('close', clientGone);
    });
    givenUp.catch(() => undefined);
    try {
      return await Promise.race([
        (async () => {
          batcher.refuseWhenFull();
          const pixels = await decoder.decode(body, type, model.spec.imgSize, transform, abandon.signal);
          if (abandon.signal.aborted) throw new HttpError(499, 'given up on while decoding'); // no forward for nobody
          const submission = batcher.submit(pixels);
          withdraw = submission.cancel;
          return submission.result;
        })(),
        givenUp,
      ]);
    } catch (error) {
      withdraw?.();
      throw error;
    } finally {
      clearTimeout(timer);
      if (clientGone) request.socket.off('close', clientGone);
    }
  };
  /** Requests of a connection being answered: one at a time (pipelined ones beyond are refused). */
  const inFlight = new WeakMap<object, number>();
  /** Connections whose request body is still arriving. */
  const receiving = new WeakSet<object>();
  const handle = async (request: http.IncomingMessage, response: http.ServerResponse) => {
    const socket = request.socket;
    inFlight.set(socket, (inFlight.get(socket) ?? 0) + 1);
    try {
      // The path alone, also of a request target in absolute form (`POST http://host/predict`, RFC 9112 3.2.2).
      const route = routeOf(request.url ?? '');
      if (route === '/health') {
        if (request.method !== 'GET' && request.method !== 'HEAD') {
          throw new HttpError(405, 'use GET /health', { allow: 'GET, HEAD' });
        }
        // A closing server (or one whose model is gone) answers 503: a load balancer's health check stops sending
        // it requests.
        const status = closing ? 'closing' : model.disposed ? 'model disposed' : 'ok';
        return send(response, status === 'ok' ? 200 : 503, {
          status,
          queued: batcher.queued,
          decoding: { small: decoder.small.load, large: decoder.large.load },
        });
      }
      if (route !== '/predict') throw new HttpError(404, 'unknown path: use POST /predict or GET /health');
      if (request.method !== 'POST') throw new HttpError(405, 'use POST /predict', { allow: 'POST' });
      if (model.disposed) throw modelDisposed();
      if ((inFlight.get(socket) ?? 0) > 1) {
        throw new HttpError(503, 'one prediction at a time per connection: wait for the answer, or open another', {
          'retry-after': String(o.retryAfterSeconds),
          connection: 'close',
        });
      }
      const type = (request.headers['content-type'] ?? '').split(';')[0].trim().toLowerCase();
      if (!Object.hasOwn(imageTypes, type)) {
        throw new HttpError(415, `content-type must be one of ${Object.keys(imageTypes).join(', ')}`);
      }
      declaredLength(request, o.maxBodyBytes);
      batcher.refuseWhenFull(); // before the body is taken: an overloaded server holds no uploads it would refuse
      if (expectsContinue(request)) {
        response.writeContinue(); // only now that the body would be taken: see 'checkContinue' below
      }
      receiving.add(socket);
      const body = await readBody(request, o.maxBodyBytes).finally(() => receiving.delete(socket));
      const probabilities = await predict(request, body, type);
      const ranked = topIndices(probabilities, o.topK).map((i) => ({
        label: labelOf(i),
        probability: probabilities[i],
      }));
      send(response, 200, { predictions: ranked });
    } catch (caught) {
      // A model that a fit is training is busy for a while, not broken: a 503 to retry, not a 500; one disposed
      // under the server is gone for good, and a load balancer should stop sending to it.
      const error =
        caught instanceof PaceBusyError
          ? new HttpError(503, 'the model is being trained by a fit in this process; retry later', {
              'retry-after': String(o.retryAfterSeconds),
            })
          : model.disposed && !(caught instanceof HttpError)
            ? modelDisposed()
            : caught;
      const status = error instanceof HttpError ? error.status : 500;
      if (!response.headersSent && !response.destroyed) {
        // The server's own failure (a CUDA message, a path) is for its operator, not for whoever sent the request.
        const message =
          status === 500
            ? 'the server failed to predict; its log says why'
            : error instanceof Error
              ? error.message
              : String(error);
        // (A client told to wait for a 100 Continue that never came may still send its body: Node closes such a
        // connection after the answer, so that body is never parsed as a next request.)
        send(response, status, { error: message }, error instanceof HttpError ? error.headers : {});
      }
      if (status === 500) reportServerError(error); // after the answer: the client waits for no log
    } finally {
      inFlight.set(socket, (inFlight.get(socket) ?? 1) - 1);
    }
  };
  const handlers = new Set<Promise<void>>();
  const headersTimeoutMs = o.headersTimeoutMs ?? Math.min(10_000, o.requestTimeoutMs);
  // Timeouts as server options: Node applies requestTimeout and headersTimeout only from createServer's options,
  // and checks them every connectionsCheckingInterval.
  const server = http.createServer(
    {
      requestTimeout: o.requestTimeoutMs,
      headersTimeout: headersTimeoutMs,
      keepAliveTimeout: o.keepAliveTimeoutMs,
      connectionsCheckingInterval: Math.max(100, Math.min(1000, Math.floor(headersTimeoutMs / 4))),
    },
    (request, response) => {
      // (`handle` answers its own failures; what could still escape it, a write to a broken response, is logged,
      // never an unhandled rejection that would end the process.)
      const handled = handle(request, response).catch(reportServerError);
      handlers.add(handled);
      void handled.finally(() => handlers.delete(handled));
    },
  );
  // With a listener here Node no longer answers `Expect: 100-continue` by itself: the handler sends 100 Continue
  // only for a request it would read, so a client declaring an oversize body or a wrong route never sends it.
  server.on('checkContinue', (request: http.IncomingMessage, response: http.ServerResponse) =>
    server.emit('request', request, response),
  );
  server.maxConnections = o.maxConnections;
  const connections = new Set<net.Socket>();
  server.on('connection', (socket: net.Socket) => {
    connections.add(socket);
    socket.once('close', () => connections.delete(socket));
  });
  /**
   * Once closed, Node no longer enforces its header and request timeouts, so a client holding a request half sent
   * would hold close() for ever: the same deadlines, counted from the close, cut such connections as Node would
   * (408 when nothing was written on it yet). Requests already received are answered, bounded by timeoutMs.
   */
  const cutAtDeadline = (stillSending: (socket: net.Socket) => boolean) => {
    for (const socket of connections) {
      if (!stillSending(socket)) continue;
      if (socket.writable && socket.bytesWritten === 0) {
        socket.write('HTTP/1.1 408 Request Timeout\r\nConnection: close\r\n\r\n');
      }
      socket.destroy();
    }
  };
  const noRequestTaken = (socket: net.Socket) => !inFlight.get(socket);
  return {
    server,
    batches: batcher.batches,
    // The queue is drained at once: waiting for the server's connections first would hold queued requests (and
    // so their connections, and the close) for the rest of the batch window. Resolves once every request taken
    // is answered (those that arrive while closing too) and every connection is closed.
    close: () =>
      new Promise<void>((resolve) => {
        closing = true;
        const drained = batcher.drain();
        const deadlines = [
          setTimeout(() => cutAtDeadline(noRequestTaken), headersTimeoutMs),
          setTimeout(
            () => cutAtDeadline((socket) => noRequestTaken(socket) || receiving.has(socket)),
            o.requestTimeoutMs,
          ),
        ];
        server.close(() => {
          deadlines.forEach(clearTimeout);
          void (async () => {
            await drained;
            while (handlers.size > 0) await Promise.allSettled([...handlers]);
            resolve();
          })();
        });
        server.closeIdleConnections();
      }),
  };
}
