import { z } from 'zod';

import type { Preprocessing } from '../models/specs';
import { ChannelMeanSchema, ChannelStdSchema, channelValues } from './normalization';
import { checkedMetadataJson, readTensorHeader, type TensorMetadata } from '../safetensors';

/** The metadata key under which `pace export` records how its run evaluated images (a JSON {@link EvalTransform}). */
export const EVAL_TRANSFORM_METADATA_KEY = 'pace_peft.eval_transform';

/**
 * The share of the resized image an evaluation keeps: timm's are 0.875 to 1; below 0.1 the resize would be over ten
 * times the model's size.
 */
export const CropPctSchema = z.number().min(0.1).max(1);

/**
 * How an image becomes a model's input at evaluation: `stretch` resizes both sides to the model's size;
 * `center-crop` resizes the shorter side to floor(size / cropPct) and keeps the centre (timm's evaluation transform,
 * and the few-shot and FGVC benchmarks' at cropPct 0.875, bilinear); `squash-crop` resizes both sides to
 * floor(size / cropPct) and keeps the centre (timm's under crop_mode 'squash'). Then the pixels, scaled to [0, 1],
 * are normalised by `mean` and `std`.
 */
export const EvalTransformSchema = z
  .object({
    resize: z.enum(['stretch', 'center-crop', 'squash-crop']),
    cropPct: CropPctSchema,
    interpolation: z.enum(['bilinear', 'bicubic']),
    mean: channelValues(ChannelMeanSchema),
    std: channelValues(ChannelStdSchema),
  })
  .strict();
export type EvalTransform = z.output<typeof EvalTransformSchema>;

/** timm's evaluation transform for weights of this preprocessing: their crop, interpolation, mean and std. */
export function timmEvalTransform(preprocessing: Preprocessing): EvalTransform {
  const { cropPct, cropMode, interpolation, mean, std } = preprocessing;
  const resize = cropMode === 'squash' ? 'squash-crop' : 'center-crop';
  return { resize, cropPct, interpolation, mean: [...mean], std: [...std] };
}

/**
 * The evaluation transform a weights file records (`pace export` writes it), or undefined when it records none. A
 * record that is not one is refused, naming the file.
 */
export function recordedEvalTransform(file: string, metadata: TensorMetadata | null): EvalTransform | undefined {
  const recorded = metadata?.[EVAL_TRANSFORM_METADATA_KEY];
  if (recorded === undefined) return undefined;
  const key = EVAL_TRANSFORM_METADATA_KEY;
  return checkedMetadataJson(recorded, EvalTransformSchema, `'${file}'`, key, 'an evaluation transform');
}

/**
 * The evaluation transform a safetensors weights file records, or undefined when it records none: for
 * `createInferenceServer(model, { transform })` on weights that `pace export` wrote.
 */
export async function readEvalTransform(file: string): Promise<EvalTransform | undefined> {
  return recordedEvalTransform(file, (await readTensorHeader(file)).metadata);
}
