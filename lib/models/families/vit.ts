import { z } from 'zod';

import { meanStdOf } from '../timm-constants';
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
    /**
     * The CLIP-style ViT (timm's `pre_norm=True`, the `vit_*_clip_*` models such as the paper's Laion-2B backbone):
     * a LayerNorm `norm_pre` before the blocks and no bias on the patch projection.
     */
    preNorm: z.boolean().default(false),
    /** Every LayerNorm's eps: 1e-6 for the original ViT, nn.LayerNorm's 1e-5 for the CLIP-style one. */
    normEps: z.number().positive().default(1e-6),
  })
  .strict();

export type VitSpec = z.output<typeof VitSpecSchema>;

/** timm's CLIP-style ViTs: name → size, patch and image size. */
const clipPresets = {
  vit_base_patch32_clip_224: { embedDim: 768, depth: 12, numHeads: 12, patchSize: 32, imgSize: 224 },
  vit_base_patch16_clip_224: { embedDim: 768, depth: 12, numHeads: 12, patchSize: 16, imgSize: 224 },
  vit_base_patch16_clip_384: { embedDim: 768, depth: 12, numHeads: 12, patchSize: 16, imgSize: 384 },
  vit_large_patch14_clip_224: { embedDim: 1024, depth: 24, numHeads: 16, patchSize: 14, imgSize: 224 },
} as const;

const sizes = {
  tiny: { embedDim: 192, depth: 12, numHeads: 3 },
  small: { embedDim: 384, depth: 12, numHeads: 6 },
  base: { embedDim: 768, depth: 12, numHeads: 12 },
  large: { embedDim: 1024, depth: 24, numHeads: 16 },
} as const;

export const vitFamily: BackboneFamily<typeof VitSpecSchema> = {
  name: 'vit',
  spec: VitSpecSchema,
  presets() {
    const presets = new Map<string, VitSpec>();
    for (const [size, dims] of Object.entries(sizes)) {
      // timm registers no tiny ViT with 32-pixel patches
      for (const patchSize of size === 'tiny' ? [16] : [16, 32]) {
        for (const imgSize of [224, 384]) {
          presets.set(
            `vit_${size}_patch${patchSize}_${imgSize}`,
            VitSpecSchema.parse({ family: 'vit', imgSize, patchSize, ...dims }),
          );
        }
      }
    }
    for (const [name, dims] of Object.entries(clipPresets)) {
      presets.set(name, VitSpecSchema.parse({ family: 'vit', ...dims, preNorm: true, normEps: 1e-5 }));
    }
    return presets;
  },
  preprocessing: (spec) => ({
    ...meanStdOf(spec.preNorm ? 'clip' : 'inception'),
    interpolation: 'bicubic',
    cropPct: cropPctFor(spec.imgSize),
    cropMode: 'center',
    imgSize: spec.imgSize,
  }),
  parameterCount(s) {
    const d = s.embedDim;
    const hidden = Math.floor(d * s.mlpRatio);
    const grid = Math.floor(s.imgSize / s.patchSize);
    const block = 4 * d + (3 * d * d + 3 * d) + (d * d + d) + (d * hidden + hidden) + (hidden * d + d);
    const head = s.numClasses > 0 ? s.numClasses * d + s.numClasses : 0;
    // patch projection (its bias only without pre-norm), class token, position embedding, norm_pre (pre-norm
    // only), the blocks, the final norm and the head
    const patchBias = s.preNorm ? 0 : d;
    const normPre = s.preNorm ? 2 * d : 0;
    return 3 * s.patchSize ** 2 * d + patchBias + d + (grid * grid + 1) * d + normPre + s.depth * block + 2 * d + head;
  },
};
