import { z } from 'zod';

import { meanStdOf } from '../timm-constants';
import { cropPctFor, type BackboneFamily } from './family';

const positiveInt = z.number().int().min(1);

/** A Swin Transformer configuration, with timm's keyword names in camelCase. */
export const SwinSpecSchema = z
  .object({
    family: z.literal('swin'),
    imgSize: positiveInt.default(224),
    patchSize: positiveInt.default(4),
    windowSize: positiveInt.default(7),
    embedDim: positiveInt,
    depths: z.array(positiveInt).min(1),
    numHeads: z.array(positiveInt).min(1),
    mlpRatio: z.number().positive().default(4),
    numClasses: z.number().int().min(0).default(1000),
    /** Stochastic depth, rising linearly over all blocks of all stages (timm's default for Swin: 0.1). */
    dropPathRate: z.number().min(0).lt(1).default(0.1),
  })
  .strict();

export type SwinSpec = z.output<typeof SwinSpecSchema>;

const sizes = {
  tiny: { embedDim: 96, depths: [2, 2, 6, 2], numHeads: [3, 6, 12, 24] },
  small: { embedDim: 96, depths: [2, 2, 18, 2], numHeads: [3, 6, 12, 24] },
  base: { embedDim: 128, depths: [2, 2, 18, 2], numHeads: [4, 8, 16, 32] },
} as const;

/** The window and image sizes timm registers a Swin size at: window 12 at 384 for the base (and large) only. */
function windowsAndImageSizes(size: string): [number, number][] {
  return size === 'base'
    ? [
        [7, 224],
        [12, 384],
      ]
    : [[7, 224]];
}

export const swinFamily: BackboneFamily<typeof SwinSpecSchema> = {
  name: 'swin',
  spec: SwinSpecSchema,
  presets() {
    const presets = new Map<string, SwinSpec>();
    for (const [size, dims] of Object.entries(sizes)) {
      for (const [windowSize, imgSize] of windowsAndImageSizes(size)) {
        presets.set(
          `swin_${size}_patch4_window${windowSize}_${imgSize}`,
          SwinSpecSchema.parse({
            family: 'swin',
            imgSize,
            windowSize,
            ...dims,
            depths: [...dims.depths],
            numHeads: [...dims.numHeads],
          }),
        );
      }
    }
    return presets;
  },
  preprocessing: (spec) => ({
    ...meanStdOf('imagenet'),
    interpolation: 'bicubic',
    cropPct: cropPctFor(spec.imgSize),
    cropMode: 'center',
    imgSize: spec.imgSize,
  }),
  parameterCount(s) {
    let total = 3 * s.patchSize ** 2 * s.embedDim + 3 * s.embedDim; // projection, its bias and norm
    let dim = s.embedDim;
    let resolution = Math.floor(s.imgSize / s.patchSize);
    s.depths.forEach((depth, stage) => {
      if (stage > 0) {
        total += 2 * (4 * dim) + 4 * dim * (2 * dim); // patch merging: norm over 4·dim, reduction to 2·dim, no bias
        dim *= 2;
        resolution = Math.floor(resolution / 2);
      }
      const hidden = Math.floor(dim * s.mlpRatio);
      // As timm (and the native block), a window at least as large as the stage's map shrinks to the map.
      const window = Math.min(s.windowSize, resolution);
      const table = (2 * window - 1) ** 2 * (s.numHeads[stage] ?? 1);
      total +=
        depth * (4 * dim + (3 * dim * dim + 3 * dim) + (dim * dim + dim) + table + 2 * dim * hidden + hidden + dim);
    });
    return total + 2 * dim + (s.numClasses > 0 ? s.numClasses * dim + s.numClasses : 0);
  },
};
