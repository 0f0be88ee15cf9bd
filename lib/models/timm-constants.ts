/** A mean and std per RGB channel, as timm's `pretrained_cfg` gives them. */
export interface MeanStd {
  readonly mean: [number, number, number];
  readonly std: [number, number, number];
}

/** timm's normalisation constants (timm/data/constants.py). */
export const TIMM_MEAN_STD = {
  /** IMAGENET_DEFAULT_MEAN/STD: Swin's, DINO's, MAE's, and the reference's benchmarks'. */
  imagenet: { mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225] },
  /** IMAGENET_INCEPTION_MEAN/STD: most ViTs' (AugReg, the original in21k release). */
  inception: { mean: [0.5, 0.5, 0.5], std: [0.5, 0.5, 0.5] },
  /** OPENAI_CLIP_MEAN/STD: the CLIP-style ViTs' (but LAION-2B ViT-L/14's, which are Inception's). */
  clip: { mean: [0.48145466, 0.4578275, 0.40821073], std: [0.26862954, 0.26130258, 0.27577711] },
} as const satisfies Record<string, MeanStd>;

export type TimmMeanStd = keyof typeof TIMM_MEAN_STD;

/** A fresh, mutable copy of a named mean and std. */
export function meanStdOf(name: TimmMeanStd): { mean: [number, number, number]; std: [number, number, number] } {
  const { mean, std } = TIMM_MEAN_STD[name];
  return { mean: [...mean], std: [...std] };
}
