// An HTTP inference server for a fine-tuned (merged) model: POST /predict with a JPEG, PNG or WebP image returns
// the top-k labels and probabilities. Concurrent requests are batched into one forward. Usage:
//   tsx examples/serve.ts --weights merged.safetensors --model vit_base_patch16_224 --classes 100 [--labels labels.json]
//     [--host ADDRESS] [--port 8080] [--top-k 5] [--max-batch 16] [--batch-window-ms 5] [--timeout-ms 10000]
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { parseArgs } from 'node:util';

import sharp from 'sharp';

import { createModel, prepareImages, tensor, type Model, type ModelSpecInput } from 'pace-peft';

export interface ServerOptions {
  model: Model;
  labels?: string[];
  topK?: number;
  /** Largest accepted request body (default 10 MiB). */
  maxBodyBytes?: number;
  maxBatch?: number;
  /** How long the first request of a batch waits for others (default 5 ms). */
  batchWindowMs?: number;
  timeoutMs?: number;
}

interface Pending {
  pixels: Buffer;
  resolve: (probabilities: Float32Array) => void;
  reject: (error: Error) => void;
}

const imageTypes = new Set(['image/jpeg', 'image/png', 'image/webp']);

class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

/** Collects concurrent requests and runs them as one forward pass. */
class Batcher {
  #queue: Pending[] = [];
  #timer: NodeJS.Timeout | undefined;
  #running = Promise.resolve();
  #draining = false;
  batches: number[] = [];

  constructor(private readonly options: Required<Pick<ServerOptions, 'model' | 'maxBatch' | 'batchWindowMs'>>) {}

  submit(pixels: Buffer): Promise<Float32Array> {
    return new Promise((resolve, reject) => {
      this.#queue.push({ pixels, resolve, reject });
      if (this.#draining || this.#queue.length >= this.options.maxBatch) this.#flush();
      else this.#timer ??= setTimeout(() => this.#flush(), this.options.batchWindowMs);
    });
  }

  #flush(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    const batch = this.#queue.splice(0, this.options.maxBatch);
    if (batch.length === 0) return;
    if (this.#queue.length > 0) {
      if (this.#draining) this.#flush();
      else this.#timer = setTimeout(() => this.#flush(), this.options.batchWindowMs);
    }
    this.#running = this.#running.then(() => this.#run(batch));
  }

  async #run(batch: Pending[]): Promise<void> {
    const { model } = this.options;
    const size = model.spec.imgSize;
    try {
      const pixels = Buffer.concat(batch.map((p) => p.pixels));
      using images = tensor(pixels, [batch.length, size, size, 3], { dtype: 'uint8' });
      using input = await prepareImages(images, { size, ...model.preprocessing });
      using logits = await model.forward(input);
      const classes = logits.shape[1];
      const values = logits.toFloat32Array();
      this.batches.push(batch.length);
      batch.forEach((pending, i) => pending.resolve(softmax(values.subarray(i * classes, (i + 1) * classes))));
    } catch (error) {
      for (const pending of batch) pending.reject(error as Error);
    }
  }

  /** Requests waiting for their batch to start. */
  get queued(): number {
    return this.#queue.length;
  }

  /** Runs what is queued now, without waiting out the batch window, and every later request at once. */
  async drain(): Promise<void> {
    this.#draining = true;
    this.#flush();
    await this.#running;
  }
}

function softmax(logits: Float32Array): Float32Array {
  const max = Math.max(...logits);
  const exps = logits.map((v) => Math.exp(v - max));
  const sum = exps.reduce((a, b) => a + b, 0);
  return exps.map((v) => v / sum);
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

/** Decodes and resizes an uploaded image to the model's input size (RGB, EXIF orientation applied). */
async function decodeUpload(body: Buffer, size: number): Promise<Buffer> {
  try {
    return await sharp(body, { failOn: 'error', limitInputPixels: 64_000_000 })
      .rotate()
      .removeAlpha()
      .toColourspace('srgb')
      .resize(size, size, { fit: 'fill', kernel: 'cubic' })
      .raw()
      .toBuffer();
  } catch (error) {
    throw new HttpError(400, `the body is not a readable image (${(error as Error).message})`);
  }
}

/**
 * The server, not yet listening. `GET /health` reports `{ status, queued }` (requests waiting for their batch).
 * `close()` stops accepting, runs queued requests at once, and resolves when every response is sent.
 */
export function createInferenceServer(options: ServerOptions): {
  server: http.Server;
  batches: number[];
  close(): Promise<void>;
} {
  const {
    model,
    labels,
    topK = 5,
    maxBodyBytes = 10 * 1024 * 1024,
    maxBatch = 16,
    batchWindowMs = 5,
    timeoutMs = 10_000,
  } = options;
  const batcher = new Batcher({ model, maxBatch, batchWindowMs });
  const send = (response: http.ServerResponse, status: number, body: unknown) => {
    response.writeHead(status, { 'content-type': 'application/json' });
    response.end(JSON.stringify(body));
  };
  const server = http.createServer(async (request, response) => {
    try {
      if (request.method === 'GET' && request.url === '/health') {
        return send(response, 200, { status: 'ok', queued: batcher.queued });
      }
      if (request.url !== '/predict') throw new HttpError(404, 'unknown path: use POST /predict or GET /health');
      if (request.method !== 'POST') throw new HttpError(405, 'use POST /predict');
      const type = (request.headers['content-type'] ?? '').split(';')[0].trim();
      if (!imageTypes.has(type)) throw new HttpError(415, `content-type must be one of ${[...imageTypes].join(', ')}`);
      const body = await readBody(request, maxBodyBytes);
      const pixels = await decodeUpload(body, model.spec.imgSize);
      let timer: NodeJS.Timeout | undefined;
      const timeout = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new HttpError(504, 'the prediction timed out')), timeoutMs);
      });
      const probabilities = await Promise.race([batcher.submit(pixels), timeout]).finally(() => clearTimeout(timer));
      const ranked = Array.from(probabilities, (p, i) => ({ label: labels?.[i] ?? String(i), probability: p }))
        .sort((a, b) => b.probability - a.probability)
        .slice(0, topK);
      send(response, 200, { predictions: ranked });
    } catch (error) {
      const status = error instanceof HttpError ? error.status : 500;
      send(response, status, { error: (error as Error).message });
    }
  });
  server.requestTimeout = timeoutMs + 5000;
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

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      weights: { type: 'string' },
      model: { type: 'string' },
      classes: { type: 'string' },
      labels: { type: 'string' },
      host: { type: 'string' },
      port: { type: 'string', default: '8080' },
      'top-k': { type: 'string', default: '5' },
      'max-batch': { type: 'string', default: '16' },
      'batch-window-ms': { type: 'string', default: '5' },
      'timeout-ms': { type: 'string', default: '10000' },
    },
  });
  if (!values.weights || !values.model || !values.classes) {
    throw new Error('usage: tsx examples/serve.ts --weights FILE --model NAME|SPEC_JSON --classes N [--labels FILE]');
  }
  const name: string | ModelSpecInput = values.model.startsWith('{') ? JSON.parse(values.model) : values.model;
  const model = await createModel(name, { numClasses: Number(values.classes), pretrained: values.weights });
  const labels = values.labels
    ? (JSON.parse((await import('node:fs')).readFileSync(values.labels, 'utf8')) as string[])
    : undefined;
  const { server, close } = createInferenceServer({
    model,
    labels,
    topK: Number(values['top-k']),
    maxBatch: Number(values['max-batch']),
    batchWindowMs: Number(values['batch-window-ms']),
    timeoutMs: Number(values['timeout-ms']),
  });
  server.listen(Number(values.port), values.host, () => {
    const { port } = server.address() as AddressInfo;
    console.log(`serving on http://${values.host ?? 'localhost'}:${port} (POST /predict, GET /health)`);
  });
  const shutdown = () => {
    console.log('shutting down: finishing queued predictions');
    void close().then(() => model.dispose());
  };
  process.once('SIGINT', shutdown);
  process.once('SIGTERM', shutdown);
}

if (require.main === module) {
  main().catch((error: unknown) => {
    console.error(error instanceof Error ? error.message : error);
    process.exitCode = 1;
  });
}
