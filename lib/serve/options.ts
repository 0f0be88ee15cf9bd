import { z } from 'zod';

import { EvalTransformSchema } from '../data/eval-transform';
import { MAX_TIMER_MS } from '../options';

const int = (min: number) => z.number().int().min(min);
const milliseconds = () => int(1).max(MAX_TIMER_MS);

/** Options of {@link createInferenceServer}, with their defaults (also the defaults of `pace serve`). */
export const ServeOptionsSchema = z
  .object({
    /** Labels of the classes, in class order (default: the class indices). */
    labels: z.array(z.string()).optional(),
    /**
     * How an upload becomes the model's input (resize, crop, interpolation, mean, std); the fields given replace
     * those of the default, timm's evaluation transform for the model's preprocessing (`pace serve` gives the
     * transform the weights record, which `pace export` writes).
     */
    transform: EvalTransformSchema.partial().optional(),
    /**
     * `exact`: each upload decoded whole and resized by `pace eval`'s code (Pillow's pixels: the server answers
     * what an evaluation computes); `fast`: libvips alone, shrinking a JPEG while decoding it (about ten times
     * faster on a 12 MP photo, a level or two off Pillow's pixels).
     */
    decode: z.enum(['exact', 'fast']).default('exact'),
    /** How many classes each answer lists. */
    topK: int(1).default(5),
    /** Largest accepted request body in bytes (413 beyond). */
    maxBodyBytes: int(1).default(10 * 1024 * 1024),
    /** Largest batch of requests run as one forward. */
    maxBatch: int(1).max(4096).default(16),
    /** How long the first request of a batch waits for others, in ms. */
    batchWindowMs: z.number().min(0).max(3_600_000).default(5),
    /** A prediction (decoding the image and the forward) not answered within this many ms gets 504. */
    timeoutMs: milliseconds().default(10_000),
    /** Predictions waiting for or in a forward at once; one more gets 503 with Retry-After. */
    maxPendingPredictions: int(1).default(64),
    /** The whole request (headers and body) must arrive within this many ms, or the connection is closed (408). */
    requestTimeoutMs: milliseconds().default(30_000),
    /** The headers must arrive within this many ms (default: 10 s, or the request timeout when that is shorter). */
    headersTimeoutMs: milliseconds().optional(),
    /** An idle keep-alive connection is closed after this many ms. */
    keepAliveTimeoutMs: milliseconds().default(5_000),
    /** Connections served at once; more are refused by the socket layer. */
    maxConnections: int(1).default(256),
    /** Largest image accepted, in pixels (413 beyond, before decoding). */
    maxPixels: int(1).default(64_000_000),
    /** Images up to this many pixels decode in the small lane, larger ones in the large lane. */
    smallPixels: int(1).default(4_194_304),
    /** Decodes running at once in the small and the large lane. */
    smallDecodes: int(1).default(1),
    largeDecodes: int(1).default(1),
    /** Decodes waiting in each lane; one more gets 503 with Retry-After. */
    maxQueuedSmall: int(0).default(64),
    maxQueuedLarge: int(0).default(2),
    /** The Retry-After of a 503, in seconds. */
    retryAfterSeconds: int(1).default(1),
    /**
     * Once no prediction has waited or run for this many ms, the CPU memory kept for reuse by forwards is returned
     * to the system (forwards of varying batch sizes otherwise hold their largest activations); 0: kept.
     */
    idleReleaseMs: z.number().int().min(0).max(3_600_000).default(5_000),
    /**
     * Told of each error that is the server's, not the request's (a forward that failed: out of memory, a broken
     * model); its client gets a 500 that does not repeat the error's text (default: written to stderr).
     */
    onError: z
      .custom<(error: unknown) => void>((value) => typeof value === 'function', { message: 'must be a function' })
      .optional(),
  })
  .strict()
  .refine((o) => o.headersTimeoutMs === undefined || o.headersTimeoutMs <= o.requestTimeoutMs, {
    path: ['headersTimeoutMs'],
    message: 'must not exceed the request timeout',
  })
  // A request alone in its batch waits the whole window before its forward starts.
  .superRefine((o, context) => {
    if (o.batchWindowMs < o.timeoutMs) return;
    context.addIssue({
      code: 'custom',
      path: ['batchWindowMs'],
      message:
        `${o.batchWindowMs} ms must be shorter than the prediction timeout, ${o.timeoutMs} ms (timeoutMs, ` +
        '--timeout-ms): a request alone would time out waiting',
    });
  });

/** Options of {@link createInferenceServer} as given. */
export type ServeOptions = z.input<typeof ServeOptionsSchema>;
