import http from 'node:http';

import { PaceOptionError } from '../errors';
import type { Model } from '../models/model';
import { parseOptions } from '../options';
import { Batcher } from './batcher';
import { imageTypes, UploadDecoder } from './decode';
import { HttpError } from './http-error';
import { ServeOptionsSchema, type ServeOptions } from './options';

/** What {@link createInferenceServer} returns. */
export interface InferenceServer {
  /** The server, not yet listening. */
  server: http.Server;
  /** The size of every batch run so far. */
  batches: number[];
  /** Stops accepting, runs queued requests at once, and resolves when every response is sent. */
  close(): Promise<void>;
}

async function readBody(request: http.IncomingMessage, limit: number): Promise<Buffer> {
  const declared = Number(request.headers['content-length'] ?? 0);
  if (declared > limit) throw new HttpError(413, `the image is larger than ${limit} bytes`);
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of request) {
    size += (chunk as Buffer).length;
    if (size > limit) throw new HttpError(413, `the image is larger than ${limit} bytes`);
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks);
}

/**
 * An HTTP inference server for a (merged) model: `POST /predict` with a JPEG, PNG or WebP body returns the top-k
 * labels and probabilities; concurrent requests are batched into one forward. `GET /health` reports
 * `{ status, queued, decoding }`. Decoding runs in two bounded lanes (small and large images) apart from the
 * forwards, with 503 and Retry-After when a lane's queue is full; Node's own request, header and keep-alive
 * timeouts bound slow clients.
 */
export function createInferenceServer(model: Model, options: ServeOptions = {}): InferenceServer {
  const o = parseOptions(ServeOptionsSchema, options, 'options');
  const classes = model.spec.numClasses;
  if (classes < 1) throw new PaceOptionError('the model has no classifier head (numClasses 0): nothing to predict');
  if (o.labels && o.labels.length !== classes) {
    throw new PaceOptionError(`options.labels: ${o.labels.length} labels for a model of ${classes} classes`);
  }
  const batcher = new Batcher({ model, maxBatch: o.maxBatch, batchWindowMs: o.batchWindowMs });
  const decoder = new UploadDecoder({
    maxPixels: o.maxPixels,
    smallPixels: o.smallPixels,
    small: { concurrency: o.smallDecodes, maxQueued: o.maxQueuedSmall },
    large: { concurrency: o.largeDecodes, maxQueued: o.maxQueuedLarge },
    retryAfterSeconds: o.retryAfterSeconds,
  });
  const send = (response: http.ServerResponse, status: number, body: unknown, headers = {}) => {
    response.writeHead(status, { 'content-type': 'application/json', ...headers });
    response.end(JSON.stringify(body));
  };
  const handle = async (request: http.IncomingMessage, response: http.ServerResponse) => {
    try {
      if (request.method === 'GET' && request.url === '/health') {
        return send(response, 200, {
          status: 'ok',
          queued: batcher.queued,
          decoding: { small: decoder.small.load, large: decoder.large.load },
        });
      }
      if (request.url !== '/predict') throw new HttpError(404, 'unknown path: use POST /predict or GET /health');
      if (request.method !== 'POST') throw new HttpError(405, 'use POST /predict');
      const type = (request.headers['content-type'] ?? '').split(';')[0].trim();
      if (!(type in imageTypes)) {
        throw new HttpError(415, `content-type must be one of ${Object.keys(imageTypes).join(', ')}`);
      }
      const body = await readBody(request, o.maxBodyBytes);
      const pixels = await decoder.decode(body, type, model.spec.imgSize);
      let timer: NodeJS.Timeout | undefined;
      const timeout = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new HttpError(504, 'the prediction timed out')), o.timeoutMs);
      });
      const probabilities = await Promise.race([batcher.submit(pixels), timeout]).finally(() => clearTimeout(timer));
      const ranked = Array.from(probabilities, (p, i) => ({ label: o.labels?.[i] ?? String(i), probability: p }))
        .sort((a, b) => b.probability - a.probability)
        .slice(0, o.topK);
      send(response, 200, { predictions: ranked });
    } catch (error) {
      const status = error instanceof HttpError ? error.status : 500;
      if (!response.headersSent) {
        send(response, status, { error: (error as Error).message }, error instanceof HttpError ? error.headers : {});
      }
    }
  };
  // Timeouts as server options: Node applies requestTimeout and headersTimeout only from createServer's options,
  // and checks them every connectionsCheckingInterval.
  const server = http.createServer(
    {
      requestTimeout: o.requestTimeoutMs,
      headersTimeout: o.headersTimeoutMs,
      keepAliveTimeout: o.keepAliveTimeoutMs,
      connectionsCheckingInterval: Math.max(100, Math.min(1000, Math.floor(o.headersTimeoutMs / 4))),
    },
    (request, response) => void handle(request, response),
  );
  server.maxConnections = o.maxConnections;
  return {
    server,
    batches: batcher.batches,
    // The queue is drained at once: waiting for the server's connections first would hold queued requests (and
    // so their connections, and the close) for the rest of the batch window.
    close: () =>
      new Promise<void>((resolve) => {
        const drained = batcher.drain();
        server.close(() => void drained.then(resolve));
        server.closeIdleConnections();
      }),
  };
}
