import fs from 'node:fs';
import path from 'node:path';

import { createModel, type Model, type ModelSpecInput } from '../../lib';

/**
 * A suite's tiny model, made the same way every time: a backbone and an adapter initialisation written once (before
 * the suite's tests, also for child processes to load), and fresh adapted models made from them.
 */
export function sharedTinyModel(dir: string, spec: ModelSpecInput, rank = 4) {
  const base = path.join(dir, 'base.safetensors');
  const init = path.join(dir, 'init.safetensors');
  beforeAll(async () => {
    using model = await createModel(spec, { seed: 11 });
    await model.saveWeights(base);
    model.addAdapters({ rank });
    await model.saveAdapters(init);
  });
  return {
    base,
    init,
    async freshModel(): Promise<Model> {
      const model = await createModel(spec, { pretrained: base });
      model.addAdapters({ rank });
      await model.loadAdapters(init);
      return model;
    },
    /** The bytes of a model's saved adapters (two runs that trained alike write the same bytes). */
    async adapterBytes(model: Model, name: string): Promise<Buffer> {
      const file = path.join(dir, `${name}.safetensors`);
      await model.saveAdapters(file);
      return fs.readFileSync(file);
    },
  };
}
