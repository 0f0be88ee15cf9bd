import fs from 'node:fs';
import path from 'node:path';

import { z } from 'zod';

import { AdapterOptionsSchema } from '../models/adapters';
import { ModelSpecSchema } from '../models/specs';
import { parseOptions } from '../options';

/** A run described in one JSON file: `pace fit --config run.json`. Relative paths are relative to the file. */
export const RunConfigSchema = z
  .object({
    model: z
      .object({
        /** A timm name (`vit_base_patch16_224`) or a spec. */
        name: z.union([z.string().min(1), ModelSpecSchema]),
        numClasses: z.number().int().min(1),
        imgSize: z.number().int().min(1).optional(),
        pretrained: z.string().min(1).optional(),
        dropPathRate: z.number().min(0).lt(1).optional(),
        device: z.string().min(1).default('cpu'),
      })
      .strict(),
    adapters: AdapterOptionsSchema.default(AdapterOptionsSchema.parse({})),
    /** Trainer options (optimizer, pace, seed), as `new Trainer(model, options)` takes them. */
    trainer: z.record(z.string(), z.unknown()).default({}),
    data: z
      .object({
        /** Dataset files: safetensors with `images` [N, 3, S, S] and `labels` [N]. */
        train: z.string().min(1),
        validation: z.string().min(1).optional(),
        test: z.string().min(1).optional(),
      })
      .strict(),
    /** Fit options (epochs, batchSize, evalEvery, schedule, ...), as `trainer.fit` takes them. */
    fit: z.record(z.string(), z.unknown()),
    runDir: z.string().min(1).optional(),
  })
  .strict();

export type RunConfig = z.output<typeof RunConfigSchema>;

/** Reads and validates a run config; errors name the file and the bad field. */
export function readRunConfig(file: string): RunConfig {
  let raw: unknown;
  try {
    raw = JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (error) {
    throw new Error(`config '${file}': ${(error as Error).message}`, { cause: error });
  }
  const config = parseOptions(RunConfigSchema, raw, `config '${file}'`);
  const base = path.dirname(path.resolve(file));
  const resolve = (p: string | undefined) => (p === undefined ? undefined : path.resolve(base, p));
  return {
    ...config,
    model: { ...config.model, pretrained: resolve(config.model.pretrained) },
    data: {
      train: resolve(config.data.train) as string,
      validation: resolve(config.data.validation),
      test: resolve(config.data.test),
    },
    runDir: resolve(config.runDir),
  };
}
