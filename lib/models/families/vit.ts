import { z } from 'zod';

import { cropPctFor, type BackboneFamily } from './family';

const positiveInt = z.number().int().min(1);

/** A Vision Transformer configuration, with timm's keyword names in camelCase. */
export const VitSpecSchema = z
  .object({
    family: z.literal('vit'),
    imgSize: positiveInt.default(224),
    patchSize: positiveInt.default(16),
    embedDim: positiveInt,
    depth: positiveInt,
    numHeads: positiveInt,
    mlpRatio: z.number().positive().default(4),
    /** 0 gives no head: `forward` then returns the pooled features. */
    numClasses: z.number().int().min(0).default(1000),
    /** Stochastic depth, rising linearly over the blocks (timm's default for ViT: 0). */
    dropPathRate: z.number().min(0).lt(1).default(0),
  })
  .strict();

export type VitSpec = z.output<typeof VitSpecSchema>;

const sizes = {
  tiny: { embedDim: 192, depth: 12, numHeads: 3 },
  small: { embedDim: 384, depth: 12, numHeads: 6 },
  base: { embedDim: 768, depth: 12, numHeads: 12 },
  large: { embedDim: 1024, depth: 24, numHeads: 16 },
} as const;

export const vitFamily: BackboneFamily<typeof VitSpecSchema> = {
  name: 'vit',
  spec: VitSpecSchema,
  aliases: {
    vit_base_patch16_224_in21k: { name: 'vit_base_patch16_224', numClasses: 21843 },
    vit_base_patch32_224_in21k: { name: 'vit_base_patch32_224', numClasses: 21843 },
    vit_large_patch16_224_in21k: { name: 'vit_large_patch16_224', numClasses: 21843 },
    vit_large_patch32_224_in21k: { name: 'vit_large_patch32_224', numClasses: 21843 },
  },
  presets() {
    const presets = new Map<string, VitSpec>();
    for (const [size, dims] of Object.entries(sizes)) {
      for (const patchSize of [16, 32]) {
        for (const imgSize of [224, 384]) {
          presets.set(
            `vit_${size}_patch${patchSize}_${imgSize}`,
            VitSpecSchema.parse({ family: 'vit', imgSize, patchSize, ...dims }),
          );
        }
      }
    }
    return presets;
  },
  preprocessing: (spec) => ({
    mean: [0.5, 0.5, 0.5],
    std: [0.5, 0.5, 0.5],
    interpolation: 'bicubic',
    cropPct: cropPctFor(spec.imgSize),
    imgSize: spec.imgSize,
  }),
  parameterCount(s) {
    const d = s.embedDim;
    const hidden = Math.floor(d * s.mlpRatio);
    const grid = Math.floor(s.imgSize / s.patchSize);
    const block = 4 * d + (3 * d * d + 3 * d) + (d * d + d) + (d * hidden + hidden) + (hidden * d + d);
    const head = s.numClasses > 0 ? s.numClasses * d + s.numClasses : 0;
    return 3 * s.patchSize ** 2 * d + d + d + (grid * grid + 1) * d + s.depth * block + 2 * d + head;
  },
};
