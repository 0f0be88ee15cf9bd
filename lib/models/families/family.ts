import type { z } from 'zod';

/** How images must be prepared for a model family's pretrained weights (timm's pretrained_cfg). */
export interface Preprocessing {
  /** Per-channel mean subtracted after scaling pixels to [0, 1] (RGB). */
  mean: [number, number, number];
  /** Per-channel standard deviation divided by after the mean. */
  std: [number, number, number];
  /** Resampling used to resize. */
  interpolation: 'bicubic' | 'bilinear';
  /**
   * Evaluation: resize the shorter side to floor(imgSize / cropPct), then centre-crop imgSize; under `cropMode`
   * 'squash', both sides to floor(imgSize / cropPct) (the aspect ratio not kept), then the centre.
   */
  cropPct: number;
  /** timm's `crop_mode`: 'center' (also when absent), or 'squash' (its CLIP fine-tunes at 384). */
  cropMode?: 'center' | 'squash';
  imgSize: number;
}

/**
 * What the TypeScript layer knows of a backbone family; the native side has its counterpart in
 * native/core/models/<family>.cpp. A new family is one such file plus one line in ./index.ts.
 */
export interface BackboneFamily<Schema extends z.ZodTypeAny = z.ZodTypeAny> {
  readonly name: string;
  /** The spec with timm's keyword names in camelCase; its `family` field is the literal `name`. */
  readonly spec: Schema;
  /** timm's model names for this family and their specs. */
  presets(): Map<string, z.output<Schema>>;
  /** The preprocessing its pretrained weights expect. */
  preprocessing(spec: z.output<Schema>): Preprocessing;
  /** The number of parameters a spec builds (timm's layouts, closed form), without building it. */
  parameterCount(spec: z.output<Schema>): number;
}

/** timm's evaluation crop: the whole image at 384 and above, 0.9 below. */
export function cropPctFor(imgSize: number): number {
  return imgSize >= 384 ? 1.0 : 0.9;
}
