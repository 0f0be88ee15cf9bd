import { z } from 'zod';

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

export const ModelSpecSchema = z.discriminatedUnion('family', [VitSpecSchema, SwinSpecSchema]);

/** A backbone configuration as given (defaults optional). */
export type ModelSpecInput = z.input<typeof ModelSpecSchema>;
/** A backbone configuration with every field resolved. */
export type ModelSpec = z.output<typeof ModelSpecSchema>;
export type VitSpec = z.output<typeof VitSpecSchema>;
export type SwinSpec = z.output<typeof SwinSpecSchema>;

/** How images must be prepared for a model family's pretrained weights (timm's pretrained_cfg). */
export interface Preprocessing {
  /** Per-channel mean subtracted after scaling pixels to [0, 1] (RGB). */
  mean: [number, number, number];
  /** Per-channel standard deviation divided by after the mean. */
  std: [number, number, number];
  /** Resampling used to resize. */
  interpolation: 'bicubic' | 'bilinear';
  /** Evaluation: resize the shorter side to floor(imgSize / cropPct), then centre-crop imgSize. */
  cropPct: number;
  imgSize: number;
}

const vitSizes = {
  tiny: { embedDim: 192, depth: 12, numHeads: 3 },
  small: { embedDim: 384, depth: 12, numHeads: 6 },
  base: { embedDim: 768, depth: 12, numHeads: 12 },
  large: { embedDim: 1024, depth: 24, numHeads: 16 },
} as const;

const swinSizes = {
  tiny: { embedDim: 96, depths: [2, 2, 6, 2], numHeads: [3, 6, 12, 24] },
  small: { embedDim: 96, depths: [2, 2, 18, 2], numHeads: [3, 6, 12, 24] },
  base: { embedDim: 128, depths: [2, 2, 18, 2], numHeads: [4, 8, 16, 32] },
} as const;

/** Names that timm deprecated in favour of a tagged name, with the class count their weights carry. */
const aliases: Record<string, { name: string; numClasses: number }> = {
  vit_base_patch16_224_in21k: { name: 'vit_base_patch16_224', numClasses: 21843 },
  vit_base_patch32_224_in21k: { name: 'vit_base_patch32_224', numClasses: 21843 },
  vit_large_patch16_224_in21k: { name: 'vit_large_patch16_224', numClasses: 21843 },
  vit_large_patch32_224_in21k: { name: 'vit_large_patch32_224', numClasses: 21843 },
};

function buildRegistry(): Map<string, ModelSpec> {
  const registry = new Map<string, ModelSpec>();
  for (const [size, dims] of Object.entries(vitSizes)) {
    for (const patchSize of [16, 32]) {
      for (const imgSize of [224, 384]) {
        registry.set(
          `vit_${size}_patch${patchSize}_${imgSize}`,
          VitSpecSchema.parse({ family: 'vit', imgSize, patchSize, ...dims }),
        );
      }
    }
  }
  for (const [size, dims] of Object.entries(swinSizes)) {
    for (const [windowSize, imgSize] of [
      [7, 224],
      [12, 384],
    ]) {
      registry.set(
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
  return registry;
}

const registry = buildRegistry();

/** Every named configuration `createModel` knows (timm's names; a `.tag` suffix such as `.augreg_in21k` is accepted). */
export function listModels(): string[] {
  return [...registry.keys(), ...Object.keys(aliases)].sort();
}

/** The configuration behind a timm model name, or undefined. */
export function resolveModelName(name: string): ModelSpec | undefined {
  const base = name.split('.')[0];
  const alias = aliases[base];
  const spec = registry.get(alias ? alias.name : base);
  if (!spec) return undefined;
  return alias ? { ...spec, numClasses: alias.numClasses } : structuredClone(spec);
}

/** The preprocessing a family's pretrained weights expect (ViT: mean/std 0.5; Swin: ImageNet's). */
export function preprocessingFor(spec: ModelSpec): Preprocessing {
  const cropPct = spec.imgSize >= 384 ? 1.0 : 0.9;
  if (spec.family === 'vit') {
    return { mean: [0.5, 0.5, 0.5], std: [0.5, 0.5, 0.5], interpolation: 'bicubic', cropPct, imgSize: spec.imgSize };
  }
  return {
    mean: [0.485, 0.456, 0.406],
    std: [0.229, 0.224, 0.225],
    interpolation: 'bicubic',
    cropPct,
    imgSize: spec.imgSize,
  };
}
