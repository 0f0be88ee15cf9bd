import type { z } from 'zod';

import { deprecatedName, deprecatedNameList, tagClassCount, tagsOf, timmTagPreprocessing } from '../hub/catalog';
import { familyOf, families, ModelSpecSchema } from './families';
import type { Preprocessing } from './families/family';
import type { SwinSpec } from './families/swin';
import type { VitSpec } from './families/vit';

export { ModelSpecSchema, type Preprocessing, type SwinSpec, type VitSpec };

/** A backbone configuration as given (defaults optional). */
export type ModelSpecInput = z.input<typeof ModelSpecSchema>;
/** A backbone configuration with every field resolved. */
export type ModelSpec = z.output<typeof ModelSpecSchema>;

function buildRegistry(): Map<string, ModelSpec> {
  const registry = new Map<string, ModelSpec>();
  for (const family of families) {
    for (const [name, spec] of family.presets()) registry.set(name, spec as ModelSpec);
  }
  return registry;
}

const registry = buildRegistry();

/** Every named configuration `createModel` knows (timm's names; a `.tag` suffix such as `.augreg_in21k` is accepted). */
export function listModels(): string[] {
  return [...registry.keys(), ...deprecatedNameList()].sort();
}

/**
 * The configuration behind a timm model name, or undefined. As in timm, a pretrained tag (`.laion2b_ft_in12k`, or
 * the one a deprecated name such as `vit_base_patch16_224_in21k` stands for) sets the head's class count to its
 * weights', and a name without one takes its default tag's (`vit_large_patch32_224`: `orig_in21k`'s, no head); a
 * tag pace-peft does not know counts as none.
 */
export function resolveModelName(name: string): ModelSpec | undefined {
  const { architecture, tag } = architectureAndTag(name);
  const spec = registry.get(architecture);
  if (!spec) return undefined;
  const counted = countedTag(architecture, tag);
  const numClasses = counted === undefined ? undefined : tagClassCount(architecture, counted);
  return { ...structuredClone(spec), ...(numClasses !== undefined && { numClasses }) };
}

/** A name's architecture and tag (a deprecated name's stand-in's; undefined when the name has none). */
function architectureAndTag(name: string): { architecture: string; tag?: string } {
  const [given, ...rest] = name.split('.');
  const tagged = deprecatedName(given) ?? (rest.length > 0 ? `${given}.${rest.join('.')}` : given);
  const [architecture, tag] = tagged.split(/\.(.*)/s);
  return { architecture, tag };
}

/**
 * The tag a name's weights are taken for: its own when pace-peft knows it, else (none, or one it does not know) the
 * architecture's default, timm's first; undefined when timm publishes no weights for the architecture.
 */
function countedTag(architecture: string, tag: string | undefined): string | undefined {
  if (tag !== undefined && tagClassCount(architecture, tag) !== undefined) return tag;
  return tagsOf(architecture)?.[0];
}

/**
 * The preprocessing timm gives a named model's weights (its tag's, or without one its default tag's mean, std,
 * crop_pct and crop_mode), at the spec's image size; undefined for a name timm publishes no such weights for.
 */
export function namedPreprocessing(name: string, spec: ModelSpec): Preprocessing | undefined {
  const { architecture, tag } = architectureAndTag(name);
  const counted = countedTag(architecture, tag);
  const known = counted === undefined ? undefined : timmTagPreprocessing(architecture, counted);
  return known && { ...known, interpolation: 'bicubic', imgSize: spec.imgSize };
}

/** The preprocessing a family's pretrained weights expect (ViT: mean/std 0.5; Swin: ImageNet's). */
export function preprocessingFor(spec: ModelSpec): Preprocessing {
  return familyOf(spec).preprocessing(spec);
}
