import type { Preprocessing } from '../models/families/family';
import { meanStdOf, type TimmMeanStd } from '../models/timm-constants';

/**
 * The pretrained weights pace-peft knows by name: timm 0.9.12's tags for each architecture it builds, as listed in
 * timm's `default_cfgs` (timm/models/vision_transformer.py and swin_transformer.py at tag v0.9.12), keeping only the
 * tags whose weights timm publishes as `timm/<architecture>.<tag>` on the Hugging Face Hub. Each architecture's
 * tags are in timm's order, so the first is timm's default (what `timm.create_model(architecture,
 * pretrained=True)` loads); each tag maps to the class count of its weights' head (0: no head).
 */
const pretrainedTags: Readonly<Record<string, Readonly<Record<string, number>>>> = {
  vit_tiny_patch16_224: { augreg_in21k_ft_in1k: 1000, augreg_in21k: 21843 },
  vit_tiny_patch16_384: { augreg_in21k_ft_in1k: 1000 },
  vit_small_patch16_224: { augreg_in21k_ft_in1k: 1000, augreg_in1k: 1000, augreg_in21k: 21843, dino: 0 },
  vit_small_patch16_384: { augreg_in21k_ft_in1k: 1000, augreg_in1k: 1000 },
  vit_small_patch32_224: { augreg_in21k_ft_in1k: 1000, augreg_in21k: 21843 },
  vit_small_patch32_384: { augreg_in21k_ft_in1k: 1000 },
  vit_base_patch16_224: {
    augreg2_in21k_ft_in1k: 1000,
    augreg_in21k_ft_in1k: 1000,
    orig_in21k_ft_in1k: 1000,
    augreg_in1k: 1000,
    orig_in21k: 0,
    augreg_in21k: 21843,
    sam_in1k: 1000,
    dino: 0,
    mae: 0,
  },
  vit_base_patch16_384: { augreg_in21k_ft_in1k: 1000, orig_in21k_ft_in1k: 1000, augreg_in1k: 1000 },
  vit_base_patch32_224: {
    augreg_in21k_ft_in1k: 1000,
    augreg_in1k: 1000,
    orig_in21k: 0,
    augreg_in21k: 21843,
    sam_in1k: 1000,
  },
  vit_base_patch32_384: { augreg_in21k_ft_in1k: 1000, augreg_in1k: 1000 },
  vit_large_patch16_224: { augreg_in21k_ft_in1k: 1000, orig_in21k: 0, augreg_in21k: 21843, mae: 0 },
  vit_large_patch16_384: { augreg_in21k_ft_in1k: 1000 },
  vit_large_patch32_224: { orig_in21k: 0 },
  vit_large_patch32_384: { orig_in21k_ft_in1k: 1000 },
  vit_base_patch32_clip_224: { laion2b_ft_in12k_in1k: 1000, laion2b_ft_in1k: 1000, openai_ft_in1k: 1000, openai: 512 },
  vit_base_patch16_clip_224: {
    laion2b_ft_in12k_in1k: 1000,
    openai_ft_in12k_in1k: 1000,
    laion2b_ft_in1k: 1000,
    openai_ft_in1k: 1000,
    laion2b_ft_in12k: 11821,
    openai_ft_in12k: 11821,
    openai: 512,
  },
  vit_base_patch16_clip_384: {
    laion2b_ft_in12k_in1k: 1000,
    openai_ft_in12k_in1k: 1000,
    laion2b_ft_in1k: 1000,
    openai_ft_in1k: 1000,
  },
  vit_large_patch14_clip_224: {
    laion2b_ft_in12k_in1k: 1000,
    openai_ft_in12k_in1k: 1000,
    laion2b_ft_in1k: 1000,
    openai_ft_in1k: 1000,
    laion2b_ft_in12k: 11821,
    openai_ft_in12k: 11821,
    openai: 768,
  },
  swin_tiny_patch4_window7_224: { ms_in1k: 1000, ms_in22k_ft_in1k: 1000, ms_in22k: 21841 },
  swin_small_patch4_window7_224: { ms_in22k_ft_in1k: 1000, ms_in1k: 1000, ms_in22k: 21841 },
  swin_base_patch4_window7_224: { ms_in22k_ft_in1k: 1000, ms_in1k: 1000, ms_in22k: 21841 },
  swin_base_patch4_window12_384: { ms_in22k_ft_in1k: 1000, ms_in1k: 1000, ms_in22k: 21841 },
};

/**
 * The mean, std and crop_pct of each tag above in timm 0.9.12's `default_cfgs` (all bicubic, all crop_mode 'center'
 * but {@link squashedArchitectures}'): what `timm.create_model(name, pretrained=True)` reports, and what a tagged
 * name gets here when its weights come from a file rather than the Hub's config.
 */
const tagPreprocessingGroups: readonly [TimmMeanStd, number, readonly string[]][] = [
  [
    'clip',
    0.9,
    [
      'vit_base_patch32_clip_224.laion2b_ft_in12k_in1k',
      'vit_base_patch32_clip_224.laion2b_ft_in1k',
      'vit_base_patch32_clip_224.openai_ft_in1k',
      'vit_base_patch32_clip_224.openai',
      'vit_base_patch16_clip_224.openai_ft_in1k',
      'vit_base_patch16_clip_224.laion2b_ft_in12k',
      'vit_base_patch16_clip_224.openai_ft_in12k',
      'vit_base_patch16_clip_224.openai',
    ],
  ],
  [
    'clip',
    0.95,
    [
      'vit_base_patch16_clip_224.laion2b_ft_in12k_in1k',
      'vit_base_patch16_clip_224.openai_ft_in12k_in1k',
      'vit_base_patch16_clip_384.openai_ft_in12k_in1k',
    ],
  ],
  [
    'clip',
    1.0,
    [
      'vit_base_patch16_clip_224.laion2b_ft_in1k',
      'vit_base_patch16_clip_384.laion2b_ft_in12k_in1k',
      'vit_base_patch16_clip_384.laion2b_ft_in1k',
      'vit_base_patch16_clip_384.openai_ft_in1k',
      'vit_large_patch14_clip_224.openai_ft_in12k_in1k',
      'vit_large_patch14_clip_224.openai_ft_in1k',
      'vit_large_patch14_clip_224.openai_ft_in12k',
      'vit_large_patch14_clip_224.openai',
    ],
  ],
  [
    'imagenet',
    0.9,
    [
      'vit_small_patch16_224.dino',
      'vit_base_patch16_224.dino',
      'vit_base_patch16_224.mae',
      'vit_large_patch16_224.mae',
      'swin_tiny_patch4_window7_224.ms_in1k',
      'swin_tiny_patch4_window7_224.ms_in22k_ft_in1k',
      'swin_tiny_patch4_window7_224.ms_in22k',
      'swin_small_patch4_window7_224.ms_in22k_ft_in1k',
      'swin_small_patch4_window7_224.ms_in1k',
      'swin_small_patch4_window7_224.ms_in22k',
      'swin_base_patch4_window7_224.ms_in22k_ft_in1k',
      'swin_base_patch4_window7_224.ms_in1k',
      'swin_base_patch4_window7_224.ms_in22k',
    ],
  ],
  [
    'imagenet',
    1.0,
    [
      'swin_base_patch4_window12_384.ms_in22k_ft_in1k',
      'swin_base_patch4_window12_384.ms_in1k',
      'swin_base_patch4_window12_384.ms_in22k',
    ],
  ],
  [
    'inception',
    0.9,
    [
      'vit_tiny_patch16_224.augreg_in21k_ft_in1k',
      'vit_tiny_patch16_224.augreg_in21k',
      'vit_small_patch16_224.augreg_in21k_ft_in1k',
      'vit_small_patch16_224.augreg_in1k',
      'vit_small_patch16_224.augreg_in21k',
      'vit_small_patch32_224.augreg_in21k_ft_in1k',
      'vit_small_patch32_224.augreg_in21k',
      'vit_base_patch16_224.augreg2_in21k_ft_in1k',
      'vit_base_patch16_224.augreg_in21k_ft_in1k',
      'vit_base_patch16_224.orig_in21k_ft_in1k',
      'vit_base_patch16_224.augreg_in1k',
      'vit_base_patch16_224.orig_in21k',
      'vit_base_patch16_224.augreg_in21k',
      'vit_base_patch16_224.sam_in1k',
      'vit_base_patch32_224.augreg_in21k_ft_in1k',
      'vit_base_patch32_224.augreg_in1k',
      'vit_base_patch32_224.orig_in21k',
      'vit_base_patch32_224.augreg_in21k',
      'vit_base_patch32_224.sam_in1k',
      'vit_large_patch16_224.augreg_in21k_ft_in1k',
      'vit_large_patch16_224.orig_in21k',
      'vit_large_patch16_224.augreg_in21k',
      'vit_large_patch32_224.orig_in21k',
    ],
  ],
  [
    'inception',
    1.0,
    [
      'vit_tiny_patch16_384.augreg_in21k_ft_in1k',
      'vit_small_patch16_384.augreg_in21k_ft_in1k',
      'vit_small_patch16_384.augreg_in1k',
      'vit_small_patch32_384.augreg_in21k_ft_in1k',
      'vit_base_patch16_384.augreg_in21k_ft_in1k',
      'vit_base_patch16_384.orig_in21k_ft_in1k',
      'vit_base_patch16_384.augreg_in1k',
      'vit_base_patch32_384.augreg_in21k_ft_in1k',
      'vit_base_patch32_384.augreg_in1k',
      'vit_large_patch16_384.augreg_in21k_ft_in1k',
      'vit_large_patch32_384.orig_in21k_ft_in1k',
      'vit_large_patch14_clip_224.laion2b_ft_in12k_in1k',
      'vit_large_patch14_clip_224.laion2b_ft_in1k',
      'vit_large_patch14_clip_224.laion2b_ft_in12k',
    ],
  ],
];

/** The architectures whose every tag above timm evaluates with crop_mode 'squash'. */
const squashedArchitectures: ReadonlySet<string> = new Set(['vit_base_patch16_clip_384']);

const tagPreprocessing = new Map(
  tagPreprocessingGroups.flatMap(([meanStd, cropPct, names]) => names.map((name) => [name, { meanStd, cropPct }])),
);

/** timm's mean, std, crop_pct and crop_mode for the weights `architecture.tag`, or undefined when timm publishes none. */
export function timmTagPreprocessing(
  architecture: string,
  tag: string,
): Omit<Preprocessing, 'interpolation' | 'imgSize'> | undefined {
  const known = tagPreprocessing.get(`${architecture}.${tag}`);
  const cropMode: Preprocessing['cropMode'] = squashedArchitectures.has(architecture) ? 'squash' : 'center';
  return known && { ...meanStdOf(known.meanStd), cropPct: known.cropPct, cropMode };
}

/** timm 0.9.12's deprecated names (`register_model_deprecations`) for architectures above, and what they stand for. */
const deprecatedNames: Readonly<Record<string, string>> = {
  vit_tiny_patch16_224_in21k: 'vit_tiny_patch16_224.augreg_in21k',
  vit_small_patch32_224_in21k: 'vit_small_patch32_224.augreg_in21k',
  vit_small_patch16_224_in21k: 'vit_small_patch16_224.augreg_in21k',
  vit_base_patch32_224_in21k: 'vit_base_patch32_224.augreg_in21k',
  vit_base_patch16_224_in21k: 'vit_base_patch16_224.augreg_in21k',
  vit_large_patch32_224_in21k: 'vit_large_patch32_224.orig_in21k',
  vit_large_patch16_224_in21k: 'vit_large_patch16_224.augreg_in21k',
  vit_small_patch16_224_dino: 'vit_small_patch16_224.dino',
  vit_base_patch16_224_dino: 'vit_base_patch16_224.dino',
  swin_base_patch4_window7_224_in22k: 'swin_base_patch4_window7_224.ms_in22k',
  swin_base_patch4_window12_384_in22k: 'swin_base_patch4_window12_384.ms_in22k',
};

/**
 * The backbones the PACE paper fine-tunes, and what it calls them. Its ViT-B/16 is Google's original ImageNet-21K
 * release (the reference loads `ViT-B_16.npz`), which timm names `orig_in21k`; timm's deprecated
 * `vit_base_patch16_224_in21k`, the name the reference creates the model by, stands for `augreg_in21k`, other weights.
 */
const paperWeights: Readonly<Record<string, string>> = {
  'vit_base_patch16_224.orig_in21k': "ViT-B/16 ImageNet-21K (Google's ViT-B_16.npz)",
  'swin_base_patch4_window7_224.ms_in22k': 'Swin-B ImageNet-22K',
  'vit_base_patch16_clip_224.laion2b_ft_in12k': 'ViT-B/16 CLIP Laion-2B',
};

/** One pretrained checkpoint pace-peft knows by name. */
export interface PretrainedInfo {
  /** `architecture.tag`, e.g. `vit_base_patch16_224.augreg_in21k`. */
  name: string;
  architecture: string;
  tag: string;
  /** The Hub repository holding it. */
  repo: string;
  /** Whether it is the architecture's default (what a name without a tag downloads). */
  default: boolean;
  /** Whether the PACE paper fine-tunes it. */
  paper: boolean;
  /** The class count of its head (0: features only). */
  numClasses: number;
  description: string;
}

/** The tags timm publishes for an architecture (timm's default first), or undefined when it publishes none. */
export function tagsOf(architecture: string): string[] | undefined {
  const tags = Object.hasOwn(pretrainedTags, architecture) ? pretrainedTags[architecture] : undefined;
  return tags && Object.keys(tags);
}

/** The class count of timm's weights `architecture.tag` (0: no head), or undefined when timm publishes none. */
export function tagClassCount(architecture: string, tag: string): number | undefined {
  const tags = Object.hasOwn(pretrainedTags, architecture) ? pretrainedTags[architecture] : undefined;
  return tags && Object.hasOwn(tags, tag) ? tags[tag] : undefined;
}

/** timm's deprecated names (`vit_base_patch16_224_in21k`, ...). */
export function deprecatedNameList(): string[] {
  return Object.keys(deprecatedNames);
}

/** What a deprecated timm name (`vit_base_patch16_224_in21k`) stands for, or undefined. */
export function deprecatedName(name: string): string | undefined {
  return Object.hasOwn(deprecatedNames, name) ? deprecatedNames[name] : undefined;
}

/** The Hub repository of timm's weights `architecture.tag`. */
export function timmRepo(architecture: string, tag: string): string {
  return `timm/${architecture}.${tag}`;
}

const sources: Record<string, string> = {
  augreg: 'AugReg',
  augreg2: 'AugReg2',
  orig: 'Google original',
  ms: 'Microsoft',
  laion2b: 'CLIP on LAION-2B',
  openai: 'CLIP by OpenAI',
  sam: 'SAM-optimised',
  dino: 'DINO, self-supervised',
  mae: 'MAE, self-supervised',
};
const datasets: Record<string, string> = {
  in1k: 'ImageNet-1k',
  in12k: 'ImageNet-12k',
  in21k: 'ImageNet-21k',
  in22k: 'ImageNet-22k',
};

/** A tag in words: `augreg2_in21k_ft_in1k` → "AugReg2 ImageNet-21k, fine-tuned on ImageNet-1k". */
function describeTag(tag: string): string {
  const [source, ...rest] = tag.split('_');
  const ft = rest.indexOf('ft');
  const before = (ft < 0 ? rest : rest.slice(0, ft)).map((part) => datasets[part] ?? part);
  const after = ft < 0 ? [] : rest.slice(ft + 1).map((part) => datasets[part] ?? part);
  return [
    [sources[source] ?? source, ...before].join(' '),
    after.length > 0 ? `fine-tuned on ${after.join(' then ')}` : undefined,
  ]
    .filter((part) => part !== undefined)
    .join(', ');
}

/** Every pretrained checkpoint pace-peft knows by name, the PACE paper's marked, each architecture's default first. */
export function listPretrained(): PretrainedInfo[] {
  return Object.entries(pretrainedTags).flatMap(([architecture, tags]) =>
    Object.entries(tags).map(([tag, numClasses], index) => {
      const name = `${architecture}.${tag}`;
      const paper = Object.hasOwn(paperWeights, name);
      // a CLIP image tower without fine-tuning ends in its projection to the shared embedding, not in classes
      const clipTower = tag === 'openai' || tag === 'laion2b';
      const head =
        numClasses === 0 ? 'no head' : clipTower ? `${numClasses}-d image embedding` : `${numClasses} classes`;
      return {
        name,
        architecture,
        tag,
        repo: timmRepo(architecture, tag),
        default: index === 0,
        paper,
        numClasses,
        description: `${describeTag(tag)} (${head})${paper ? `; the PACE paper's ${paperWeights[name]}` : ''}`,
      };
    }),
  );
}
