import fs from 'node:fs';

import { z } from 'zod';

import { PaceFileError, PaceUnsupportedError } from '../errors';
import type { Preprocessing } from '../models/families/family';

const triple = z.tuple([z.number(), z.number(), z.number()]);
const divisor = z.number().positive('must be > 0 (each channel is divided by it)');

/** The parts of timm's `config.json` (`timm.models.push_to_hf_hub`'s `save_config_for_hf`) pace-peft reads. */
const TimmConfigSchema = z.looseObject({
  architecture: z.string().optional(),
  num_classes: z.number().int().min(0),
  label_names: z.array(z.string()).optional(),
  pretrained_cfg: z.looseObject({
    input_size: triple,
    interpolation: z.string().default('bicubic'),
    crop_pct: z.number().positive().max(1).default(0.875),
    mean: triple,
    std: z.tuple([divisor, divisor, divisor]),
  }),
});

/** What a timm `config.json` says about its weights. */
export interface PretrainedConfig {
  /** timm's architecture name (`vit_base_patch16_224`), when the file names it. */
  architecture?: string;
  /** The class count of the weights' head (0: features only). */
  numClasses: number;
  /** The classes' names, in class order, when the file has them. */
  labelNames?: string[];
  /** How images must be prepared for these weights (timm's `pretrained_cfg`). */
  preprocessing: Preprocessing;
}

/** Reads a timm `config.json`; a malformed one is a PaceFileError naming the model, the file and the field. */
export function readPretrainedConfig(file: string, name: string): PretrainedConfig {
  let raw: unknown;
  try {
    raw = JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (error) {
    throw new PaceFileError(`pretrained '${name}': config.json (${file}) is not JSON: ${(error as Error).message}`, {
      cause: error,
    });
  }
  const parsed = TimmConfigSchema.safeParse(raw);
  if (!parsed.success) {
    const problems = parsed.error.issues.map((issue) => `${issue.path.join('.') || '(root)'}: ${issue.message}`);
    throw new PaceFileError(`pretrained '${name}': config.json (${file}) is not a timm config: ${problems.join('; ')}`);
  }
  const config = parsed.data;
  const { input_size: inputSize, interpolation, crop_pct: cropPct, mean, std } = config.pretrained_cfg;
  if (interpolation !== 'bicubic' && interpolation !== 'bilinear') {
    throw new PaceUnsupportedError(
      `pretrained '${name}': config.json asks for '${interpolation}' interpolation; pace-peft resizes with bicubic or bilinear`,
    );
  }
  if (inputSize[1] !== inputSize[2]) {
    throw new PaceUnsupportedError(
      `pretrained '${name}': config.json's input size ${inputSize[1]}×${inputSize[2]} is not square; pace-peft's models take square images`,
    );
  }
  return {
    architecture: config.architecture,
    numClasses: config.num_classes,
    // names that do not match the head (one per class) would mislabel every answer: left out
    labelNames: config.label_names?.length === config.num_classes ? config.label_names : undefined,
    preprocessing: { mean, std, interpolation, cropPct, imgSize: inputSize[1] },
  };
}
