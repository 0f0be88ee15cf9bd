// An adapter file records what its adapters were trained on (the backbone's architecture and the frozen weights'
// fingerprint): loading it onto another architecture is refused, onto other frozen weights only with
// allowOtherWeights. Bug caught: adapters loaded silently onto another checkpoint or a CLIP-style ViT of the same
// shapes, and the logits were off by 2.
import path from 'node:path';

import { createModel, loadTensors, saveTensors, tensor, type Model, type ModelSpecInput } from '../lib';
import { makeTempDir } from './support/paths';
import { tinyVit } from './support/synthetic';

const temp = makeTempDir('adapter-provenance');
afterAll(() => temp.cleanup());

const file = (name: string) => path.join(temp.dir, name);

async function adapted(spec: ModelSpecInput, seed: number, pretrained?: string): Promise<Model> {
  const model = await createModel(spec, { seed, ...(pretrained ? { pretrained } : {}) });
  model.addAdapters({ rank: 2 });
  return model;
}

/** The trainable parameters' values (adapters and head), in order. */
function trainable(model: Model): number[][] {
  const names = new Set(model.trainableParameters());
  return Object.entries(model.stateDict()).flatMap(([name, t]) => {
    const values = Array.from(t.toFloat32Array());
    t.dispose();
    return names.has(name) ? [values] : [];
  });
}

let source: Model;
const saved = file('adapters.safetensors');
const base = file('base.safetensors');

beforeAll(async () => {
  using backbone = await createModel(tinyVit, { seed: 3 });
  await backbone.saveWeights(base);
  source = await adapted(tinyVit, 5, base);
  await source.saveAdapters(saved);
});
afterAll(() => source.dispose());

test("the file records the backbone's architecture, image size and frozen weights' fingerprint", async () => {
  const { metadata, tensors } = await loadTensors(saved);
  for (const t of Object.values(tensors)) t.dispose();
  expect(JSON.parse(metadata!['pace_peft.adapters'])).toEqual({
    type: 'loramul_vptadd',
    rank: 2,
    family: 'vit',
    model: 'vit',
    architecture: { patchSize: 8, embedDim: 32, depth: 2, numHeads: 2, mlpRatio: 4, preNorm: false, normEps: 1e-6 },
    imgSize: 16,
    frozenWeights: source.weightsFingerprint(),
  });
  expect(source.weightsFingerprint()).toMatch(/^crc32:[0-9a-f]{8}$/);
});

test('the same frozen weights under another seed load, to the saved values', async () => {
  using target = await adapted(tinyVit, 9, base);
  expect(target.weightsFingerprint()).toBe(source.weightsFingerprint());
  await target.loadAdapters(saved);
  expect(trainable(target)).toEqual(trainable(source));
});

test('other frozen weights are refused naming both fingerprints, and load with allowOtherWeights', async () => {
  using other = await adapted(tinyVit, 4);
  const before = trainable(other);
  const theirs = source.weightsFingerprint();
  const own = other.weightsFingerprint();
  expect(own).not.toBe(theirs);
  await expect(other.loadAdapters(saved)).rejects.toThrow(
    `adapter file '${saved}' was trained on other frozen weights: fingerprint ${theirs}, this model's is ${own}; pass { allowOtherWeights: true } (pace: --allow-other-weights) to load them onto these weights`,
  );
  expect(trainable(other)).toEqual(before);
  await other.loadAdapters(saved, { allowOtherWeights: true });
  expect(trainable(other)).toEqual(trainable(source));
});

test('another image size is named when the fingerprints differ', async () => {
  using larger = await createModel({ ...tinyVit, imgSize: 32 }, { pretrained: base });
  larger.addAdapters({ rank: 2 });
  await expect(larger.loadAdapters(saved)).rejects.toThrow(
    /other frozen weights: .* \(they were trained at image size 16, this model's is 32\); pass/,
  );
});

test.each<[string, ModelSpecInput, string]>([
  ['a CLIP-style ViT', { ...tinyVit, preNorm: true, normEps: 1e-5 }, "preNorm false, this model's true"],
  ['another layer-norm eps', { ...tinyVit, normEps: 1e-5 }, "normEps 0.000001, this model's 0.00001"],
])('%s is another architecture, refused with allowOtherWeights too', async (_, spec, difference) => {
  using other = await adapted(spec, 5);
  const before = trainable(other);
  for (const options of [{}, { allowOtherWeights: true }]) {
    await expect(other.loadAdapters(saved, options)).rejects.toThrow(
      `adapter file '${saved}' was trained on another architecture: its backbone has ${difference}`,
    );
  }
  expect(trainable(other)).toEqual(before);
});

test('a file without the new records (older versions, the reference) loads onto any weights as before', async () => {
  const { tensors, metadata } = await loadTensors(saved);
  const recorded = JSON.parse(metadata!['pace_peft.adapters']) as Record<string, unknown>;
  const older = Object.fromEntries(['type', 'rank', 'family', 'model'].map((field) => [field, recorded[field]]));
  const old = file('older.safetensors');
  await saveTensors(old, tensors, { metadata: { 'pace_peft.adapters': JSON.stringify(older) } });
  for (const t of Object.values(tensors)) t.dispose();
  using clip = await adapted({ ...tinyVit, preNorm: true }, 4);
  await clip.loadAdapters(old);
  expect(trainable(clip)).toEqual(trainable(source));
});

test("the official PACE code's files load: its wrappers' levels in the names (with and without PACE's noise)", async () => {
  // Bug (review): train.py saves `<linear>.delta_*` and `head.base_module.*` (the residual wrappers), under
  // `.adapter.` too when PACE wraps them in its noise module; every tensor was reported missing or foreign.
  const { tensors } = await loadTensors(saved);
  try {
    for (const withNoise of [false, true]) {
      const referenceNamed = new Map(
        Object.entries(tensors).map(([name, value]) => {
          const owner = name.slice(0, name.lastIndexOf('.'));
          const wrapped = `${owner}${withNoise ? '.adapter' : ''}${owner === 'head' ? '.base_module' : ''}`;
          return [`${wrapped}${name.slice(owner.length)}`, value];
        }),
      );
      expect([...referenceNamed.keys()]).toContain(
        withNoise ? 'head.adapter.base_module.weight' : 'head.base_module.weight',
      );
      const reference = file(`reference-${withNoise}.safetensors`);
      await saveTensors(reference, referenceNamed); // (no metadata, as a converted weight.pt)
      using target = await adapted(tinyVit, 9, base);
      await target.loadAdapters(reference);
      expect(trainable(target)).toEqual(trainable(source));
    }
    // one tensor under two names is refused, naming both
    const twice = file('twice.safetensors');
    await saveTensors(twice, {
      'head.weight': tensors['head.weight'],
      'head.base_module.weight': tensors['head.weight'],
    });
    using target = await adapted(tinyVit, 9, base);
    await expect(target.loadAdapters(twice)).rejects.toThrow(
      /holds both '(head\.weight|head\.base_module\.weight)' and '(head\.weight|head\.base_module\.weight)', two names of head\.weight/,
    );
  } finally {
    for (const t of Object.values(tensors)) t.dispose();
  }
});

test('weights saved with adapters folded in are refused by a model with adapters, which would apply them twice', async () => {
  // Bug (review): saveWeights then loadWeights on the adapted model gave W0 + 2ΔW (and a second VPT shift), unsaid.
  const foldedIn = file('folded.safetensors');
  await source.saveWeights(foldedIn);
  const recorded = async (at: string) => {
    const { metadata, tensors } = await loadTensors(at);
    for (const t of Object.values(tensors)) t.dispose();
    return metadata?.['pace_peft.merged_adapters'];
  };
  expect(await recorded(foldedIn)).toBe('loramul_vptadd');
  using other = await adapted(tinyVit, 9, base);
  const before = trainable(other);
  await expect(other.loadWeights(foldedIn)).rejects.toThrow(
    `'${foldedIn}' holds weights with loramul_vptadd adapters folded in (saveWeights of a model with adapters): ` +
      "under this model's adapters they would apply twice. Load it into a model without adapters (then add new " +
      'ones), or load the adapters themselves with loadAdapters()',
  );
  expect(other.weightsFingerprint()).toBe(source.weightsFingerprint());
  expect(trainable(other)).toEqual(before);
  // A model without adapters takes it, and so does one whose adapters are added afterwards; what it saves, and
  // what merged() copies save, still say so. A backbone without adapters records nothing.
  using plain = await createModel(tinyVit, { pretrained: foldedIn });
  const again = file('folded-again.safetensors');
  await plain.saveWeights(again);
  expect(await recorded(again)).toBe('loramul_vptadd');
  using copy = await source.merged();
  const exported = file('exported.safetensors');
  await copy.saveWeights(exported);
  expect(await recorded(exported)).toBe('loramul_vptadd');
  using backbone = await createModel(tinyVit, { pretrained: base });
  const untouched = file('untouched.safetensors');
  await backbone.saveWeights(untouched);
  expect(await recorded(untouched)).toBeUndefined();
});

test('the option is checked', async () => {
  using model = await adapted(tinyVit, 5, base);
  await expect(model.loadAdapters(saved, { allowOtherWeights: 'yes' } as never)).rejects.toThrow(
    /options\.allowOtherWeights/,
  );
  await expect(model.loadAdapters(saved, { allowOther: true } as never)).rejects.toThrow(/allowOther/);
});

test('weights loaded after addAdapters are the ones recorded and checked', async () => {
  using model = await adapted(tinyVit, 4);
  const before = model.weightsFingerprint();
  await model.loadWeights(base, { strict: false }); // the adapters are not in the checkpoint
  expect(model.weightsFingerprint()).not.toBe(before);
  const reloaded = file('reloaded.safetensors');
  await model.saveAdapters(reloaded);
  const { metadata, tensors } = await loadTensors(reloaded);
  for (const t of Object.values(tensors)) t.dispose();
  expect(JSON.parse(metadata!['pace_peft.adapters']).frozenWeights).toBe(source.weightsFingerprint());
  await model.loadAdapters(saved);
  expect(trainable(model)).toEqual(trainable(source));
});

test('a save or load queued behind a forward waits its turn instead of being refused as busy', async () => {
  // The fingerprint is read natively only on an idle model: the metadata must not need it while a forward runs.
  using model = await adapted(tinyVit, 5, base);
  using images = tensor(new Float32Array(64 * 3 * 16 * 16).fill(0.5), [64, 3, 16, 16]);
  const queued = file('queued.safetensors');
  const forward = model.forward(images);
  await model.saveAdapters(queued);
  const again = model.forward(images);
  await model.loadAdapters(saved);
  (await forward).dispose();
  (await again).dispose();
  const { metadata, tensors } = await loadTensors(queued);
  for (const t of Object.values(tensors)) t.dispose();
  expect(JSON.parse(metadata!['pace_peft.adapters']).frozenWeights).toBe(source.weightsFingerprint());
});

test('after loadWeights, a save queued behind a forward, or behind the load itself, waits its turn', async () => {
  // Bug: loadWeights dropped the kept fingerprint, which was then read natively on a busy model (PaceBusyError).
  using model = await adapted(tinyVit, 6);
  using images = tensor(new Float32Array(64 * 3 * 16 * 16).fill(0.5), [64, 3, 16, 16]);
  const recorded = async (name: string) => {
    const { metadata, tensors } = await loadTensors(file(name));
    for (const t of Object.values(tensors)) t.dispose();
    return JSON.parse(metadata!['pace_peft.adapters']).frozenWeights as string;
  };
  const report = await model.loadWeights(base, { strict: false });
  expect(Object.keys(report).sort()).toEqual([
    'ignored',
    'loaded',
    'missing',
    'reinitialized',
    'resized',
    'unexpected',
  ]);
  const forward = model.forward(images);
  await model.saveAdapters(file('after-load.safetensors'));
  (await forward).dispose();
  expect(await recorded('after-load.safetensors')).toBe(source.weightsFingerprint());

  using other = await createModel(tinyVit, { seed: 7 }); // (a backbone: weights saved with adapters would be refused)
  const otherBase = file('other-base.safetensors');
  await other.saveWeights(otherBase);
  const loading = model.loadWeights(otherBase, { strict: false });
  const saving = model.saveAdapters(file('behind-load.safetensors'));
  await Promise.all([loading, saving]);
  const otherWeights = model.weightsFingerprint();
  expect(otherWeights).not.toBe(source.weightsFingerprint());
  expect(await recorded('behind-load.safetensors')).toBe(otherWeights);
  // A load that fails leaves the weights, and the fingerprint recorded, as they were.
  await expect(model.loadWeights(file('no-such.safetensors'))).rejects.toThrow();
  await model.saveAdapters(file('after-failed-load.safetensors'));
  expect(await recorded('after-failed-load.safetensors')).toBe(otherWeights);
});

test("'linear' and 'full' have no rank or targets: a file loads whatever rank was given, and targets are refused", async () => {
  // Bugs: a linear-probe file saved at the default rank 10 was refused by a linear model given rank 4; targets
  // were taken silently though nothing was adapted.
  using source = await createModel(tinyVit, { seed: 1 });
  source.addAdapters({ type: 'linear' });
  await source.saveAdapters(file('linear.safetensors'));
  using target = await createModel(tinyVit, { seed: 1 });
  target.addAdapters({ type: 'linear', rank: 4 });
  await target.loadAdapters(file('linear.safetensors'));
  expect(trainable(target)).toEqual(trainable(source));
  using other = await createModel(tinyVit, { seed: 1 });
  expect(() => other.addAdapters({ type: 'linear', targets: ['qkv'] })).toThrow(
    "adapter type 'linear' adds no adapters (it trains the head alone): it takes no targets",
  );
  // Bug: 'head' was said to name no Linear at all.
  expect(() => other.addAdapters({ targets: ['head'] })).toThrow(
    "adapter target 'head' names the classifier head (head), which takes no adapter: it trains in full with the adapters",
  );
});

test('a file of another backbone family is refused naming the family first', async () => {
  // Bug: the adapter type was compared first, so a Swin file met by a ViT of another type named only the type.
  using swin = await createModel(
    {
      family: 'swin',
      imgSize: 32,
      patchSize: 4,
      windowSize: 4,
      embedDim: 16,
      depths: [1, 1],
      numHeads: [1, 2],
      numClasses: 4,
    },
    { seed: 1 },
  );
  swin.addAdapters({ type: 'loraadd', rank: 2 });
  await swin.saveAdapters(file('swin.safetensors'));
  using vit = await adapted(tinyVit, 1);
  await expect(vit.loadAdapters(file('swin.safetensors'))).rejects.toThrow(
    /was saved from a swin backbone .*; this model is a vit/,
  );
});
