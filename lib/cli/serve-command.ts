import fs from 'node:fs';
import path from 'node:path';
import type { AddressInfo } from 'node:net';
import { parseArgs } from 'node:util';

import sharp from 'sharp';

import {
  EvalTransformSchema,
  recordedEvalTransform,
  timmEvalTransform,
  type EvalTransform,
} from '../data/eval-transform';
import { headWeightEntry } from '../models/class-names';
import { createModel } from '../models/model';
import { ModelSpecSchema, resolveModelName, type ModelSpecInput } from '../models/specs';
import { readTensorHeader } from '../safetensors';
import { ServeOptionsSchema, type ServeOptions } from '../serve/options';
import { createInferenceServer } from '../serve/server';
import { err, out } from './output';
import { deviceFlag, numberFlag, UsageError, type Command, type Flags } from './usage';

/** Numeric flags and the server option each sets. */
const numericFlags: Record<string, keyof ServeOptions> = {
  'top-k': 'topK',
  'max-batch': 'maxBatch',
  'batch-window-ms': 'batchWindowMs',
  'timeout-ms': 'timeoutMs',
  'request-timeout-ms': 'requestTimeoutMs',
  'headers-timeout-ms': 'headersTimeoutMs',
  'keep-alive-timeout-ms': 'keepAliveTimeoutMs',
  'max-body-bytes': 'maxBodyBytes',
  'max-connections': 'maxConnections',
  'max-pixels': 'maxPixels',
  'max-pending': 'maxPendingPredictions',
  'idle-release-ms': 'idleReleaseMs',
};

/** The class count of a checkpoint's classifier head, and the evaluation transform it records (if any). */
async function readWeightsHeader(weights: string): Promise<{ classes: number; transform?: EvalTransform }> {
  const header = await readTensorHeader(weights);
  const head = headWeightEntry(header.entries);
  if (!head) throw new UsageError(`--weights: ${weights} has no classifier head (head.weight): nothing to predict`);
  return { classes: head.shape[0], transform: recordedEvalTransform(weights, header.metadata) };
}

/** One line saying how uploads are turned into the model's input, and where that came from. */
function describeTransform(transform: EvalTransform, origin: string): string {
  const resizes = {
    stretch: 'stretched',
    'center-crop': `centre-cropped at ${transform.cropPct}`,
    'squash-crop': `squashed and centre-cropped at ${transform.cropPct}`,
  };
  const resize = `${resizes[transform.resize]} (${transform.interpolation})`;
  const values = (v: readonly number[]) => `[${v.join(', ')}]`;
  return `uploads ${resize}, mean ${values(transform.mean)}, std ${values(transform.std)}: ${origin}`;
}

function readLabels(file: string, classes: number): string[] {
  let labels: unknown;
  try {
    labels = JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (error) {
    throw new UsageError(`--labels: cannot read ${file} as JSON (${(error as Error).message})`);
  }
  if (!Array.isArray(labels) || !labels.every((l) => typeof l === 'string')) {
    throw new UsageError(`--labels: ${file} must hold a JSON array of strings`);
  }
  if (labels.length !== classes) {
    throw new UsageError(`--labels: ${file} has ${labels.length} labels, the weights' head has ${classes} classes`);
  }
  return labels as string[];
}

const SERVE_FLAGS = {
  weights: { type: 'string' },
  model: { type: 'string' },
  labels: { type: 'string' },
  classes: { type: 'string' },
  host: { type: 'string', default: '127.0.0.1' },
  port: { type: 'string', default: '8080' },
  device: { type: 'string', default: 'cpu' },
  resize: { type: 'string' },
  decode: { type: 'string', default: 'exact' },
  ...Object.fromEntries(Object.keys(numericFlags).map((flag) => [flag, { type: 'string' as const }])),
} satisfies Flags;

export const serveCommand: Command = {
  flags: SERVE_FLAGS,
  summary: 'Serves a merged model over HTTP: POST an image, get the top-k labels',
  usage: `pace serve --weights FILE --model NAME|SPEC_JSON [--labels FILE] [--classes N] [--host 127.0.0.1] [--port 8080]
  Serves a merged model over HTTP: POST /predict with a JPEG, PNG or WebP body answers the top-k labels and
  probabilities; GET /health. Concurrent requests are batched into one forward. The class count comes from the
  weights' head (--classes, if given, must agree). Labels are --labels' (a JSON array, one label per class) if
  given, else the class names the weights record (pace export writes them when the run knew them), else indices.
  Uploads are resized and normalised as the run that made the weights evaluated (pace export records it), else
  as timm evaluates the model (shorter side to size / crop_pct, the centre; both sides under its crop_mode
  squash); --resize stretch|center-crop|squash-crop overrides the resize.
  [--top-k 5] [--max-batch 16] [--batch-window-ms 5] [--timeout-ms 10000] (a prediction's 504)
  [--max-pending 64] (predictions waiting for or in a forward; one more gets 503) [--idle-release-ms 5000]
  (idle that long, the forwards' cached CPU memory goes back to the system; 0: kept)
  [--request-timeout-ms 30000] [--headers-timeout-ms 10000, at most the request's] [--keep-alive-timeout-ms 5000]
  [--max-body-bytes 10485760] [--max-pixels 64000000] [--max-connections 256] [--device cpu|cuda]
  [--resize stretch|center-crop|squash-crop] [--decode exact|fast] (exact: Pillow's pixels, as pace eval; fast:
  libvips alone, about ten times faster on large photos, a level or two off)
  SIGINT or SIGTERM stops accepting, answers what is queued, and exits 0.`,
  async run(args) {
    const { values } = parseArgs({ args, options: SERVE_FLAGS });
    if (!values.weights) throw new UsageError('--weights is required');
    if (!values.model) throw new UsageError('--model is required');
    if (values.labels === '') throw new UsageError('--labels needs a file (a JSON array of the class labels)');
    // An empty host would have Node listen on every interface.
    const host = (values.host as string).trim();
    if (host === '') throw new UsageError('--host needs an address (127.0.0.1; 0.0.0.0 or :: for every interface)');
    const device = deviceFlag(values.device as string);
    const port = numberFlag('--port', values.port as string);
    if (!Number.isInteger(port) || port < 0 || port > 65535) {
      throw new UsageError(`--port must be an integer from 0 to 65535, got '${values.port}'`);
    }
    const options: Record<string, unknown> = {};
    for (const [flag, key] of Object.entries(numericFlags)) {
      const text = (values as Record<string, string | undefined>)[flag];
      if (text !== undefined) options[key] = numberFlag(`--${flag}`, text);
    }
    const checked = ServeOptionsSchema.safeParse(options);
    if (!checked.success) {
      const issue = checked.error.issues[0];
      const flag = Object.entries(numericFlags).find(([, key]) => key === issue.path[0])?.[0] ?? String(issue.path[0]);
      throw new UsageError(`--${flag}: ${issue.message}`);
    }
    if (values.decode !== 'exact' && values.decode !== 'fast') {
      throw new UsageError(`--decode must be exact or fast, got '${values.decode}'`);
    }
    const resizes: readonly string[] = EvalTransformSchema.shape.resize.options;
    if (values.resize !== undefined && !resizes.includes(values.resize)) {
      throw new UsageError(`--resize must be ${resizes.join(', ')}, got '${values.resize}'`);
    }
    const { classes, transform: recorded } = await readWeightsHeader(values.weights);
    if (values.classes !== undefined && numberFlag('--classes', values.classes) !== classes) {
      throw new UsageError(
        `--classes ${values.classes} disagrees with the weights' head, which has ${classes} classes`,
      );
    }
    const labels = values.labels !== undefined ? readLabels(values.labels, classes) : undefined;
    let name: string | ModelSpecInput = values.model;
    if (values.model.trim().startsWith('{')) {
      try {
        name = JSON.parse(values.model) as ModelSpecInput;
      } catch (error) {
        throw new UsageError(`--model: not valid JSON (${(error as Error).message})`);
      }
      const spec = ModelSpecSchema.safeParse({ ...(name as object), numClasses: classes });
      if (!spec.success) {
        const issue = spec.error.issues[0];
        throw new UsageError(`--model: ${issue.path.join('.') || 'the spec'}: ${issue.message}`);
      }
    } else if (!resolveModelName(values.model)) {
      throw new UsageError(`--model: unknown model '${values.model}' (pace pull --list names the known ones)`);
    }
    // A path, never a pretrained name: a file called vit_tiny_patch16_224 must not be fetched from the Hub.
    const weights = path.resolve(values.weights);
    const model = await createModel(name, { numClasses: classes, pretrained: weights, device });
    sharp.cache(false); // libvips' operation cache only holds memory here: no upload is decoded twice
    const transform = {
      ...(recorded ?? timmEvalTransform(model.preprocessing)),
      ...(values.resize !== undefined && { resize: values.resize as EvalTransform['resize'] }),
    };
    const origin = recorded ? 'as the weights record' : "timm's evaluation transform for the model";
    out(describeTransform(transform, values.resize !== undefined ? `${origin}, --resize ${values.resize}` : origin));
    const { server, close } = createInferenceServer(model, {
      ...(options as ServeOptions),
      labels,
      transform,
      decode: values.decode,
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, host, () => {
        // A later error (EMFILE on accept) is the server's to survive, not the listen's: said, and served on.
        server.off('error', reject);
        server.on('error', (error) => err(`pace serve: ${error.message}`));
        resolve();
      });
    });
    const address = server.address() as AddressInfo;
    const shown = address.family === 'IPv6' ? `[${address.address}]` : address.address;
    out(`serving on http://${shown}:${address.port} (POST /predict, GET /health)`);
    await new Promise<void>((resolve) => {
      const shutdown = () => {
        out('shutting down: answering queued predictions');
        void close().then(resolve);
      };
      process.once('SIGINT', shutdown);
      process.once('SIGTERM', shutdown);
    });
    model.dispose();
    return 0;
  },
};
