import fs from 'node:fs';

import { z } from 'zod';

import { PaceFileError, PaceUnsupportedError } from '../errors';
import { CropPctSchema } from '../data/eval-transform';
import { ChannelMeanSchema, ChannelStdSchema } from '../data/normalization';
import type { Preprocessing } from '../models/families/family';

const triple = z.tuple([z.number(), z.number(), z.number()]);

/** The parts of timm's `config.json` (`timm.models.push_to_hf_hub`'s `save_config_for_hf`) pace-peft reads. */
const TimmConfigSchema = z.looseObject({
  architecture: z.string().optional(),
  num_classes: z.number().int().min(0),
  // a list, or (timm's save_config_for_hf allows it, for heads with gaps) a map from class index to name
  label_names: z.union([z.array(z.string()), z.record(z.string(), z.string())]).optional(),
  pretrained_cfg: z.looseObject({
    input_size: triple,
    interpolation: z.string().default('bicubic'),
    crop_pct: CropPctSchema.default(0.875),
    crop_mode: z.string().default('center'),
    mean: z.tuple([ChannelMeanSchema, ChannelMeanSchema, ChannelMeanSchema]),
    std: z.tuple([ChannelStdSchema, ChannelStdSchema, ChannelStdSchema]),
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
  const {
    input_size: inputSize,
    interpolation,
    crop_pct: cropPct,
    crop_mode: cropMode,
    mean,
    std,
  } = config.pretrained_cfg;
  if (interpolation !== 'bicubic' && interpolation !== 'bilinear') {
    throw new PaceUnsupportedError(
      `pretrained '${name}': config.json asks for '${interpolation}' interpolation; pace-peft resizes with bicubic or bilinear`,
    );
  }
  if (cropMode !== 'center' && cropMode !== 'squash') {
    throw new PaceUnsupportedError(
      `pretrained '${name}': config.json asks for crop_mode '${cropMode}'; pace-peft crops 'center' or 'squash'`,
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
    labelNames: labelNamesOf(config.label_names, config.num_classes),
    preprocessing: { mean, std, interpolation, cropPct, cropMode, imgSize: inputSize[1] },
  };
}

/**
 * One name per class, in class order, from a config's list or index-to-name map; undefined when they do not name
 * every class of the head once (names that do not match it would mislabel every answer).
 */
function labelNamesOf(given: string[] | Record<string, string> | undefined, numClasses: number): string[] | undefined {
  if (given === undefined || Array.isArray(given)) return given?.length === numClasses ? given : undefined;
  const names = Array.from({ length: numClasses }, (_, index) => given[String(index)]);
  const exact = Object.keys(given).length === numClasses && names.every((name) => name !== undefined);
  return exact ? names : undefined;
}
