import path from 'node:path';

import sharp from 'sharp';

import {
  createInferenceServer,
  createModel,
  loadTensors,
  PaceFileError,
  PaceOptionError,
  readTensorHeader,
  saveTensors,
} from '../lib';
import { makeTempDir, repoRoot } from './support/paths';
import { listen, postImage } from './support/serve';

const temp = makeTempDir('class-names');
afterAll(() => temp.cleanup());

const checkpoint = path.join(repoRoot, 'examples', 'assets', 'vit-demo-fashion-mnist.safetensors');
const spec = { family: 'vit', imgSize: 28, patchSize: 7, embedDim: 64, depth: 4, numHeads: 4, numClasses: 10 } as const;
const names = ['T-shirt', 'Trouser', 'Pullover', 'Dress', 'Coat', 'Sandal', 'Shirt', 'Sneaker', 'Bag', 'Ankle boot'];
const at = (file: string) => path.join(temp.dir, file);

/** The head's values: what tells whether a load changed the model. */
async function headOf(model: Awaited<ReturnType<typeof createModel>>): Promise<number[]> {
  const state = model.stateDict();
  const values = Array.from(state['head.weight'].toFloat32Array());
  Object.values(state).forEach((t) => t.dispose());
  return values;
}

test('class names are checked when set, recorded by saveWeights and saveAdapters, and read back with the head', async () => {
  using model = await createModel(spec, { pretrained: checkpoint, seed: 1 });
  expect(model.classNames).toBeUndefined(); // the demo checkpoint records none
  expect(() => (model.classNames = names.slice(0, 2))).toThrow(
    new PaceOptionError('classNames: 2 names for a head of 10 classes'),
  );
  expect(() => (model.classNames = [1, 2] as unknown as string[])).toThrow(PaceOptionError);
  model.classNames = names;
  expect(model.classNames).toEqual(names);
  expect(Object.isFrozen(model.classNames)).toBe(true); // a copy: the caller's array can change, the model's not

  // saveWeights records them; a load whose head comes from the file takes them, one that re-initialises it not.
  await model.saveWeights(at('named.safetensors'), { metadata: { note: 'kept' } });
  const { metadata } = await readTensorHeader(at('named.safetensors'));
  expect(JSON.parse(metadata!['pace_peft.class_names'])).toEqual(names);
  expect(metadata!.note).toBe('kept');
  using reloaded = await createModel(spec, { pretrained: at('named.safetensors') });
  expect(reloaded.classNames).toEqual(names);
  using fourClasses = await createModel({ ...spec, numClasses: 4 }, { pretrained: at('named.safetensors') });
  expect(fourClasses.loadReport?.reinitialized).toEqual(['head.weight', 'head.bias']);
  expect(fourClasses.classNames).toBeUndefined();
  await reloaded.loadWeights(checkpoint); // a head from a file that names no classes: the old names go
  expect(reloaded.classNames).toBeUndefined();

  // saveAdapters records them; loadAdapters (the head comes with the adapters) and merged() carry them.
  model.addAdapters({ rank: 2 });
  await model.saveAdapters(at('adapters.safetensors'));
  using other = await createModel(spec, { pretrained: checkpoint });
  other.addAdapters({ rank: 2 });
  await other.loadAdapters(at('adapters.safetensors'));
  expect(other.classNames).toEqual(names);
  using merged = await other.merged();
  expect(merged.classNames).toEqual(names);
  // A file without them (the PACE reference's) gives a head of unknown classes.
  const { tensors } = await loadTensors(at('adapters.safetensors'));
  await saveTensors(at('reference-adapters.safetensors'), tensors);
  Object.values(tensors).forEach((t) => t.dispose());
  await other.loadAdapters(at('reference-adapters.safetensors'));
  expect(other.classNames).toBeUndefined();
  model.resetHead();
  expect(model.classNames).toBeUndefined();
});

test('a weights or adapter file whose class names do not fit its head is refused, the model unchanged', async () => {
  // Bug it guards: names of another head would label every answer wrongly, without a word.
  const { tensors } = await loadTensors(checkpoint);
  await saveTensors(at('three-names.safetensors'), tensors, {
    metadata: { 'pace_peft.class_names': JSON.stringify(['a', 'b', 'c']) },
  });
  await saveTensors(at('bad-json.safetensors'), tensors, { metadata: { 'pace_peft.class_names': '[a' } });
  Object.values(tensors).forEach((t) => t.dispose());
  using model = await createModel(spec, { seed: 3 });
  const before = await headOf(model);
  await expect(model.loadWeights(at('three-names.safetensors'))).rejects.toThrow(
    new PaceFileError(
      `'${at('three-names.safetensors')}': its 'pace_peft.class_names' metadata: 3 names for a head of 10 classes`,
    ),
  );
  await expect(model.loadWeights(at('bad-json.safetensors'))).rejects.toThrow(
    /'pace_peft.class_names' metadata is not JSON/,
  );
  expect(await headOf(model)).toEqual(before);

  using named = await createModel(spec, { pretrained: checkpoint });
  named.addAdapters({ rank: 2 });
  named.classNames = names;
  await named.saveAdapters(at('named-adapters.safetensors'));
  const file = await loadTensors(at('named-adapters.safetensors'));
  const recorded = JSON.parse(file.metadata!['pace_peft.adapters']);
  expect(recorded.classNames).toEqual(names);
  await saveTensors(at('short-adapters.safetensors'), file.tensors, {
    metadata: { 'pace_peft.adapters': JSON.stringify({ ...recorded, classNames: ['a', 'b'] }) },
  });
  Object.values(file.tensors).forEach((t) => t.dispose());
  using target = await createModel(spec, { pretrained: checkpoint });
  target.addAdapters({ rank: 2 });
  const headBefore = await headOf(target);
  await expect(target.loadAdapters(at('short-adapters.safetensors'))).rejects.toThrow(
    `adapter file '${at('short-adapters.safetensors')}' names 2 classes; this model's head has 10`,
  );
  expect(await headOf(target)).toEqual(headBefore);
  expect(target.classNames).toBeUndefined();
});

test("the inference server answers with the model's class names; options.labels win over them", async () => {
  using model = await createModel(spec, { pretrained: checkpoint });
  model.classNames = names;
  const png = await sharp(Buffer.alloc(28 * 28 * 3, 200), { raw: { width: 28, height: 28, channels: 3 } })
    .png()
    .toBuffer();
  const answers: string[][] = [];
  for (const labels of [undefined, names.map((n) => n.toUpperCase())]) {
    const { server, close } = createInferenceServer(model, { labels, topK: 10 });
    try {
      const response = await postImage(await listen(server), png);
      expect(response.status).toBe(200);
      const { predictions } = (await response.json()) as { predictions: { label: string }[] };
      answers.push(predictions.map((p) => p.label));
    } finally {
      await close();
    }
  }
  expect([...answers[0]].sort()).toEqual([...names].sort());
  expect(answers[1]).toEqual(answers[0].map((n) => n.toUpperCase()));
});

test("saveWeights' metadata may not hold pace-peft's own keys, but for an evaluation transform it checks", async () => {
  // Bug: { 'pace_peft.class_names': 'oops' } was written over the model's names, into a file the library then
  // refused to load ("its 'pace_peft.class_names' metadata is not JSON").
  using model = await createModel(spec, { pretrained: checkpoint, seed: 1 });
  model.classNames = names;
  await expect(
    model.saveWeights(at('own.safetensors'), { metadata: { 'pace_peft.class_names': 'oops' } }),
  ).rejects.toThrow(
    new PaceOptionError(
      "options.metadata: 'pace_peft.class_names' is one of pace-peft's own keys: set model.classNames, which " +
        'saveWeights records',
    ),
  );
  await expect(model.saveWeights(at('own.safetensors'), { metadata: { 'pace_peft.adapters': '{}' } })).rejects.toThrow(
    new PaceOptionError("options.metadata: 'pace_peft.adapters' is one of pace-peft's own keys"),
  );
  const transform = { resize: 'center-crop', cropPct: 2, interpolation: 'bicubic', mean: [0, 0, 0], std: [1, 1, 1] };
  await expect(
    model.saveWeights(at('own.safetensors'), { metadata: { 'pace_peft.eval_transform': JSON.stringify(transform) } }),
  ).rejects.toThrow(
    new PaceOptionError(
      "options.metadata: 'pace_peft.eval_transform' metadata is not an evaluation transform (cropPct: Too big: " +
        'expected number to be <=1)',
    ),
  );
  const valid = JSON.stringify({ ...transform, cropPct: 0.9 });
  await model.saveWeights(at('own.safetensors'), { metadata: { 'pace_peft.eval_transform': valid, origin: 'test' } });
  const { metadata } = await readTensorHeader(at('own.safetensors'));
  expect(metadata).toMatchObject({ 'pace_peft.eval_transform': valid, origin: 'test' });
  expect(JSON.parse(metadata!['pace_peft.class_names'])).toEqual(names);
});
