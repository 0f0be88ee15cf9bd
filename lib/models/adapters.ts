import { z } from 'zod';

import { ClassNamesSchema } from './class-names';

/** The adapter types: the paper's strong baseline (`loramul_vptadd`), its parts, and two comparison baselines. */
export const AdapterTypeSchema = z.enum([
  'loramul_vptadd',
  'loramul',
  'loraadd',
  'vptadd',
  'loraadd_vptadd',
  'linear',
  'full',
]);
export type AdapterType = z.infer<typeof AdapterTypeSchema>;

/** Options of {@link Model.addAdapters}. */
export const AdapterOptionsSchema = z
  .object({
    /** `linear` trains only the head; `full` trains everything. Default `loramul_vptadd`. */
    type: AdapterTypeSchema.default('loramul_vptadd'),
    /** Rank of the low-rank factors and of the prompt; between 1 and each adapted layer's min(in, out). */
    rank: z.number().int().min(1).default(10),
    /** Linear paths or suffixes (`'attn.qkv'`, `'blocks.3.mlp.fc1'`) to adapt; default every Linear but the head. */
    targets: z.array(z.string().min(1)).optional(),
  })
  .strict();
export type AdapterOptions = z.input<typeof AdapterOptionsSchema>;
export type AdapterConfig = z.output<typeof AdapterOptionsSchema>;

/** The metadata key under which saveAdapters records the adapter configuration (JSON). */
export const ADAPTER_METADATA_KEY = 'pace_peft.adapters';

/** The metadata key under which saveWeights records the adapters it folded into the weights (their type). */
export const MERGED_ADAPTERS_METADATA_KEY = 'pace_peft.merged_adapters';

/** Whether adapters of `type` add to the frozen weights they adapt ('linear' and 'full' train weights themselves). */
export function foldsIntoWeights(type: string | undefined): boolean {
  return type !== undefined && type !== 'linear' && type !== 'full';
}

/**
 * What saveAdapters records: the adapter configuration, the backbone's family and model name, and what the
 * adapters were trained on: the backbone's architecture, the image size and the frozen weights' fingerprint
 * (files of older versions and the reference's carry none of these three).
 */
export const SavedAdapterConfigSchema = z.object({
  type: AdapterTypeSchema,
  rank: z.number().int().min(1),
  targets: z.array(z.string()).optional(),
  family: z.string().optional(),
  model: z.string().optional(),
  architecture: z.record(z.string(), z.unknown()).optional(),
  imgSize: z.number().optional(),
  frozenWeights: z.string().optional(),
  /** The head's class names, when the model knew them (`Model.classNames`). */
  classNames: ClassNamesSchema.optional(),
});
export type SavedAdapterConfig = z.infer<typeof SavedAdapterConfigSchema>;

/** Options of {@link Model.loadAdapters}. */
export const LoadAdaptersOptionsSchema = z
  .object({
    /**
     * Loads adapters trained on other frozen weights of the same architecture (another checkpoint), which is
     * otherwise refused: their numbers were fitted to the weights they were trained on.
     */
    allowOtherWeights: z.boolean().default(false),
  })
  .strict();
export type LoadAdaptersOptions = z.input<typeof LoadAdaptersOptionsSchema>;
