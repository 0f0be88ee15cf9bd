import type { z } from 'zod';

import { familyOf, families, ModelSpecSchema } from './families';
import type { Preprocessing } from './families/family';
import type { SwinSpec } from './families/swin';
import type { VitSpec } from './families/vit';

export { ModelSpecSchema, type Preprocessing, type SwinSpec, type VitSpec };

/** A backbone configuration as given (defaults optional). */
export type ModelSpecInput = z.input<typeof ModelSpecSchema>;
/** A backbone configuration with every field resolved. */
export type ModelSpec = z.output<typeof ModelSpecSchema>;

const aliases = Object.assign({}, ...families.map((family) => family.aliases ?? {})) as Record<
  string,
  { name: string; numClasses: number }
>;

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
  return familyOf(spec).preprocessing(spec);
}
