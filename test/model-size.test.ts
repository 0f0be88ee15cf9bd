import { createModel, type ModelSpecInput } from '../lib';
import { parameterCount } from '../lib/models/size';
import { ModelSpecSchema } from '../lib/models/specs';

// The closed-form parameter count that guards createModel against specs too big for memory, checked against
// what libtorch really allocates for odd shapes of both families.
test.each<ModelSpecInput>([
  { family: 'vit', imgSize: 32, patchSize: 8, embedDim: 24, depth: 3, numHeads: 2, mlpRatio: 2.5, numClasses: 7 },
  { family: 'vit', imgSize: 28, patchSize: 7, embedDim: 16, depth: 1, numHeads: 4, numClasses: 0 },
  {
    family: 'swin',
    imgSize: 64,
    patchSize: 4,
    windowSize: 4,
    embedDim: 12,
    depths: [1, 2, 1],
    numHeads: [1, 2, 4],
    numClasses: 5,
  },
  {
    family: 'swin',
    imgSize: 48,
    patchSize: 2,
    windowSize: 3,
    embedDim: 8,
    depths: [2, 1],
    numHeads: [2, 2],
    mlpRatio: 3,
    numClasses: 0,
  },
  // A window at least as large as a stage's map shrinks to the map (as timm), and its position table with it:
  // in the second stage only (8x8 then 4x4 under a window of 8), in the only stage (4x4 under 7), and a window
  // far larger than the map, whose table at full size would not fit in memory.
  {
    family: 'swin',
    imgSize: 32,
    patchSize: 4,
    windowSize: 8,
    embedDim: 8,
    depths: [1, 1],
    numHeads: [1, 2],
    numClasses: 3,
  },
  { family: 'swin', imgSize: 16, patchSize: 4, windowSize: 7, embedDim: 8, depths: [2], numHeads: [2], numClasses: 3 },
  {
    family: 'swin',
    imgSize: 32,
    patchSize: 4,
    windowSize: 100_000,
    embedDim: 8,
    depths: [1],
    numHeads: [1],
    numClasses: 3,
  },
])('parameterCount equals the parameters a built %#th model holds', async (input) => {
  using model = await createModel(input);
  expect(parameterCount(ModelSpecSchema.parse(input))).toBe(model.numParameters());
});

test('a spec whose parameters cannot fit in memory is refused at once, with its size, before any allocation', async () => {
  const started = performance.now();
  await expect(createModel({ family: 'vit', embedDim: 100_000, depth: 1000, numHeads: 8 })).rejects.toThrow(
    /^spec: this vit has 1\.20e\+14 parameters, 4470\d\d\.\d GiB in float32, more than this machine's [\d.]+ GiB of memory$/,
  );
  await expect(
    createModel({ family: 'swin', embedDim: 96, depths: [2, 2, 10_000_000, 2], numHeads: [3, 6, 12, 24] }),
  ).rejects.toThrow(/^spec: this swin has 1\.78e\+13 parameters/);
  expect(performance.now() - started).toBeLessThan(5000); // no allocation attempt: the old path took minutes
});
