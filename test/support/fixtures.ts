import fs from 'node:fs';
import path from 'node:path';

import {
  createModel,
  type AdapterType,
  type Model,
  type ModelSpecInput,
  type Tensor,
  type TensorRecord,
} from '../../lib';
import { fixturesDir } from './paths';

/** A file of the shared parity fixtures. */
export const fixture = (name: string): string => path.join(fixturesDir, name);

/** The fixtures' index.json and index.clip.json (the CLIP-style ViT's): each fixture's configuration. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export const fixtureIndex: Record<string, any> = {
  ...JSON.parse(fs.readFileSync(fixture('index.json'), 'utf8')),
  ...JSON.parse(fs.readFileSync(fixture('index.clip.json'), 'utf8')),
};

/** The adapter type of a PACE fixture, from the reference's name for it in index.json. */
export function fixtureAdapterType(name: string): AdapterType {
  const types: Record<string, AdapterType> = {
    LoRAmul_VPTadd: 'loramul_vptadd',
    LoRAadd: 'loraadd',
    VPTadd: 'vptadd',
  };
  return types[fixtureIndex[name].adapter];
}

/** The model spec of a fixture, from timm's keyword names in index.json. */
export function fixtureSpec(name: string): ModelSpecInput {
  const entry = fixtureIndex[name];
  const c = entry.config;
  const clip = entry.kind === 'vit_clip' || entry.backbone === 'VisionTransformerCLIP';
  const vit = clip || entry.kind === 'vit' || entry.backbone === 'VisionTransformer';
  return vit
    ? {
        family: 'vit',
        imgSize: c.img_size,
        patchSize: c.patch_size,
        embedDim: c.embed_dim,
        depth: c.depth,
        numHeads: c.num_heads,
        numClasses: c.num_classes,
        ...(clip && { preNorm: c.pre_norm === true, normEps: c.norm_eps }),
      }
    : {
        family: 'swin',
        imgSize: c.img_size,
        patchSize: c.patch_size,
        windowSize: c.window_size,
        embedDim: c.embed_dim,
        depths: c.depths,
        numHeads: c.num_heads,
        numClasses: c.num_classes,
        dropPathRate: c.drop_path_rate ?? 0,
      };
}

/** A PACE fixture's model: its backbone with the reference's adapters, as the reference step starts from. */
export async function fixtureAdaptedModel(name: string, spec: Partial<ModelSpecInput> = {}): Promise<Model> {
  const model = await createModel({ ...fixtureSpec(name), ...spec } as ModelSpecInput, {
    pretrained: fixture(`${name}.base.safetensors`),
  });
  model.addAdapters({ type: fixtureAdapterType(name), rank: fixtureIndex[name].rank });
  await model.loadAdapters(fixture(`${name}.adapters.safetensors`));
  return model;
}

/** The ε per linear of a PACE fixture's step (`noise.<linear>` in its io file), keyed by linear. */
export function fixtureNoise(io: TensorRecord): Record<string, Tensor> {
  return Object.fromEntries(
    Object.entries(io)
      .filter(([key]) => key.startsWith('noise.'))
      .map(([key, value]) => [key.slice('noise.'.length), value]),
  );
}
