import fs from 'node:fs';
import path from 'node:path';

import {
  createModel,
  disposeTensors,
  listModels,
  loadTensors,
  memoryStats,
  PaceShapeError,
  saveTensors,
  resolveModelName,
  tensor,
  Trainer,
  type Model,
  type Tensor,
  type ModelSpecInput,
  type TensorFile,
} from '../lib';
import { maxRelativeError, relativeError } from './support/compare';
import { cpuBf16Refused, cpuBf16Runs } from './support/cpu-bf16';
import { fixture, fixtureIndex, fixtureSpec } from './support/fixtures';
import { makeTempDir } from './support/paths';
import { readReferenceSafetensors } from './support/reference-safetensors';
import { testIf } from './support/test-if';
import { npy, numpyZip, storedZip } from './support/zip';

// From test/reference/timm_resampled_models.py: timm 0.9.12's logits for the fixtures loaded through its own
// loaders into models of another geometry (Swin's window 7 to 14; ViT's patch 8 at 32 px to patch 16 at 64 px, on
// closedFormImages(2, 64)).
const timmResampled = {
  swin_window14: [
    0.1520744, -0.07575586, 0.1581682, 0.2068144, -0.1682168, -0.2038696, -0.115205, -0.2367823, -0.1411705, -0.3938225,
    0.08171604, -0.07564592, 0.1495406, 0.09688798, -0.3211861, -0.244178, -0.2621817, -0.2765015, -0.09750953,
    -0.3555757, 0.1183727, -0.02728397, 0.1086636, 0.1909841, -0.2054474, 0.02942982, -0.0038727, -0.1487025,
    -0.1956041, -0.189773,
  ],
  vit_patch16_from_safetensors: [
    -0.0934023, 0.03639299, -0.207283, 1.091315, 0.3512856, 0.01635137, -0.760088, -0.5785689, 0.7335696, -1.098314,
    -0.1467233, -0.3102311, -0.3003765, 0.6529194, 0.1241757, 0.5415122, -0.1778221, -0.7925237, 0.8012252, -0.1310261,
  ],
  vit_patch16_from_npz: [
    -0.1003003, 0.02161881, -0.2022404, 1.11853, 0.3647085, -0.03085179, -0.7983317, -0.5509731, 0.6832286, -1.113738,
    -0.166537, -0.2960159, -0.2796065, 0.6407844, 0.1513902, 0.5668777, -0.1700554, -0.7934034, 0.7937123, -0.08583063,
  ],
};

/** [batch, 3, size, size] with sin(0.01 i) at flat index i, in float64 stored in float32 (as the reference's). */
function closedFormImages(batch: number, size: number): Tensor {
  const values = Float32Array.from({ length: batch * 3 * size * size }, (_, i) => Math.sin(0.01 * i));
  return tensor(values, [batch, 3, size, size]);
}

const index = fixtureIndex;
const temp = makeTempDir('models');
afterAll(() => temp.cleanup());

const vitTiny = fixtureSpec('vit_tiny_test') as Extract<ModelSpecInput, { family: 'vit' }>;
const swinTiny = fixtureSpec('swin_tiny_test') as Extract<ModelSpecInput, { family: 'swin' }>;

let vitIo: TensorFile;
let vitResizedIo: TensorFile;
let swinIo: TensorFile;
beforeAll(async () => {
  vitIo = await loadTensors(fixture('vit_tiny_test.io.safetensors'));
  vitResizedIo = await loadTensors(fixture('vit_tiny_test.resized.io.safetensors'));
  swinIo = await loadTensors(fixture('swin_tiny_test.io.safetensors'));
});
afterAll(() => [vitIo, vitResizedIo, swinIo].forEach((io) => disposeTensors(io.tensors)));

async function expectParity(model: Model, io: TensorFile, logitsKey = 'logits'): Promise<void> {
  using logits = await model.forward(io.tensors.input);
  expect(relativeError(logits, io.tensors[logitsKey])).toBeLessThan(1e-4);
  if (io.tensors.features) {
    using features = await model.forwardFeatures(io.tensors.input);
    expect(relativeError(features, io.tensors.features)).toBeLessThan(1e-4);
  }
}

describe('parity with timm (fixtures, float32 CPU, 1e-4 relative)', () => {
  test.each(['vit_tiny_test.safetensors', 'vit_tiny_test.npz'])('ViT from %s: logits and features', async (file) => {
    using model = await createModel(vitTiny, { pretrained: fixture(file) });
    expect(model.loadReport?.loaded).toHaveLength(model.parameters().length);
    expect(model.loadReport?.resized).toEqual([]);
    await expectParity(model, vitIo);
  });

  test.each([
    ['vit_tiny_test.safetensors', 'logits_from_safetensors'],
    ['vit_tiny_test.npz', 'logits_from_npz'],
  ])('ViT at 1.5x the size from %s: position embedding resampled as timm does', async (file, key) => {
    const imgSize = index.vit_tiny_test.resized_img_size;
    using model = await createModel({ ...vitTiny, imgSize }, { pretrained: fixture(file) });
    expect(model.loadReport?.resized).toEqual(['pos_embed']);
    await expectParity(model, vitResizedIo, key);
  });

  test('the two resampling rules really differ (bicubic+antialias vs bilinear)', () => {
    expect(
      relativeError(vitResizedIo.tensors.logits_from_npz, vitResizedIo.tensors.logits_from_safetensors),
    ).toBeGreaterThan(1e-4);
  });

  test.each([
    ['vit_tiny_test.safetensors', 'vit_patch16_from_safetensors'],
    ['vit_tiny_test.npz', 'vit_patch16_from_npz'],
  ] as const)('ViT at another patch size from %s: patch embedding resampled as timm does', async (file, key) => {
    // Patch 8 at 32 px to patch 16 at 64 px: the grid stays 4 × 4, so only the patch kernel changes.
    using model = await createModel({ ...vitTiny, patchSize: 16, imgSize: 64 }, { pretrained: fixture(file) });
    expect(model.loadReport?.resized).toEqual(['patch_embed.proj.weight']);
    using images = closedFormImages(2, 64);
    using logits = await model.forward(images);
    using expected = tensor(Float32Array.from(timmResampled[key]), [2, 10]);
    expect(relativeError(logits, expected)).toBeLessThan(1e-4);
  });

  test('a patch kernel with a dimension of 0 is a shape mismatch naming the file, not an internal error', async () => {
    // Bug (review): the empty kernel went into libtorch's interpolate, whose refusal ("Input and output sizes should
    // be greater than 0") came out as a PaceInternalError naming neither the file nor the tensor.
    const { tensors } = await loadTensors(fixture('vit_tiny_test.safetensors'));
    const [embed, channels] = tensors['patch_embed.proj.weight'].shape;
    const file = path.join(temp.dir, 'empty-patch-kernel.safetensors');
    await saveTensors(file, {
      ...tensors,
      'patch_embed.proj.weight': tensor(new Float32Array(0), [embed, channels, 0, 16]),
    });
    const error = await createModel({ ...vitTiny, patchSize: 16, imgSize: 64 }, { pretrained: file }).catch(
      (caught: unknown) => caught,
    );
    disposeTensors(tensors);
    expect(error).toBeInstanceOf(PaceShapeError);
    expect((error as Error).message).toContain(`checkpoint '${file}'`);
    expect((error as Error).message).toContain(
      `patch_embed.proj.weight: the checkpoint's tensor of shape [${embed},${channels},0,16] holds no values to resample`,
    );
  });

  test('an empty head is a head of another size (reset), an empty norm a plain shape mismatch', async () => {
    // Bug (review): every tensor of a dimension of 0 was refused as one with "no values to resample", also where no
    // resampling applies: a classifier's empty head failed the load instead of being reset as timm does.
    const { tensors } = await loadTensors(fixture('vit_tiny_test.safetensors'));
    const embed = tensors['patch_embed.proj.weight'].shape[0];
    const headless = path.join(temp.dir, 'empty-head.safetensors');
    await saveTensors(headless, {
      ...tensors,
      'head.weight': tensor(new Float32Array(0), [0, embed]),
      'head.bias': tensor(new Float32Array(0), [0]),
    });
    const emptyNorm = path.join(temp.dir, 'empty-norm.safetensors');
    await saveTensors(emptyNorm, { ...tensors, 'norm.weight': tensor(new Float32Array(0), [0]) });
    disposeTensors(tensors);
    using model = await createModel({ ...vitTiny, imgSize: 64 }, { pretrained: headless, numClasses: 10 });
    expect(model.loadReport?.reinitialized).toEqual(['head.weight', 'head.bias']);
    const error = await createModel({ ...vitTiny, imgSize: 64 }, { pretrained: emptyNorm }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(PaceShapeError);
    expect((error as Error).message).toContain(`norm.weight: the model has [${embed}], the checkpoint [0]`);
  });

  test('the two patch resamplings really differ (bicubic+antialias vs bilinear)', () => {
    const [fromSafetensors, fromNpz] = [
      timmResampled.vit_patch16_from_safetensors,
      timmResampled.vit_patch16_from_npz,
    ].map((values) => Float32Array.from(values));
    expect(maxRelativeError(fromNpz, fromSafetensors)).toBeGreaterThan(1e-3);
  });

  test('the CLIP-style ViT (norm_pre, bias-less patch projection, LayerNorm eps 1e-5): logits and features', async () => {
    const clipSpec = fixtureSpec('vit_clip_tiny_test') as Extract<ModelSpecInput, { family: 'vit' }>;
    using model = await createModel(clipSpec, { pretrained: fixture('vit_clip_tiny_test.safetensors') });
    // Every tensor of timm's file is used and nothing is missing: norm_pre is there, patch_embed.proj.bias is not.
    const names = readReferenceSafetensors(fixture('vit_clip_tiny_test.safetensors')).names;
    expect([...(model.loadReport?.loaded ?? [])].sort()).toEqual([...names].sort());
    expect(names).toContain('norm_pre.weight');
    expect(names).not.toContain('patch_embed.proj.bias');
    const io = await loadTensors(fixture('vit_clip_tiny_test.io.safetensors'));
    await expectParity(model, io);
    // The eps matters: the same weights as an original ViT (eps 1e-6, no norm_pre) are refused, and with
    // eps 1e-6 the outputs move by more than the tolerance.
    await expect(
      createModel({ ...clipSpec, preNorm: false }, { pretrained: fixture('vit_clip_tiny_test.safetensors') }),
    ).rejects.toThrow(/missing patch_embed\.proj\.bias; unexpected norm_pre\.bias, norm_pre\.weight/);
    using wrongEps = await createModel(
      { ...clipSpec, normEps: 1e-6 },
      { pretrained: fixture('vit_clip_tiny_test.safetensors') },
    );
    using logits = await wrongEps.forward(io.tensors.input);
    expect(relativeError(logits, io.tensors.logits)).toBeGreaterThan(1e-6);
    disposeTensors(io.tensors);
  });

  testIf(cpuBf16Runs, cpuBf16Refused)(
    'forward in bf16 (autocast) gives float32 logits within bf16 rounding of the float32 ones',
    async () => {
      using model = await createModel(vitTiny, { pretrained: fixture('vit_tiny_test.safetensors') });
      using fp32 = await model.forward(vitIo.tensors.input);
      using bf16 = await model.forward(vitIo.tensors.input, { precision: 'bf16' });
      using features = await model.forwardFeatures(vitIo.tensors.input, { precision: 'bf16' });
      expect([bf16.dtype, features.dtype]).toEqual(['float32', 'float32']);
      // bfloat16 keeps 8 significant bits (relative rounding 2^-9 per product): the logits move by up to 1e-2
      // of their scale after three blocks (5e-3 here), but they do move (the products really ran in bf16).
      const error = relativeError(bf16, fp32);
      expect(error).toBeLessThan(5e-2);
      expect(error).toBeGreaterThan(1e-5);
      expect(relativeError(features, vitIo.tensors.features)).toBeLessThan(5e-2);
      await expect(model.forward(vitIo.tensors.input, { precision: 'fp16' as 'bf16' })).rejects.toThrow(
        /^options\.precision: /,
      );
    },
  );

  test.each(['swin_tiny_test.safetensors', 'swin_tiny_test.with-buffers.safetensors'])(
    'Swin from %s: logits and features',
    async (file) => {
      using model = await createModel(swinTiny, { pretrained: fixture(file) });
      expect(model.loadReport?.missing).toEqual([]);
      // Exactly the file's buffers are ignored (an independent header read): an index per block, a mask per
      // shifted block; none in the new layout.
      const buffers = readReferenceSafetensors(fixture(file)).names.filter((name) =>
        /relative_position_index|attn_mask/.test(name),
      );
      expect(buffers).toHaveLength(file.includes('with-buffers') ? 8 : 0);
      expect([...(model.loadReport?.ignored ?? [])].sort()).toEqual(buffers.sort());
      await expectParity(model, swinIo);
    },
  );
  test('Swin at another window: relative-position tables resized as timm does', async () => {
    using model = await createModel(
      { ...swinTiny, windowSize: 14 },
      { pretrained: fixture('swin_tiny_test.safetensors') },
    );
    // Stage 2 works on 7 × 7 tokens, so its window stays 7 (as timm clamps it) and its tables load as they are.
    expect(model.loadReport?.resized).toEqual(
      ['layers.0.blocks.0', 'layers.0.blocks.1', 'layers.1.blocks.0', 'layers.1.blocks.1'].map(
        (block) => `${block}.attn.relative_position_bias_table`,
      ),
    );
    const table = model.parameters().find((p) => p.name === 'layers.0.blocks.0.attn.relative_position_bias_table');
    expect(table?.shape).toEqual([27 * 27, 2]);
    using logits = await model.forward(swinIo.tensors.input);
    using expected = tensor(Float32Array.from(timmResampled.swin_window14), [3, 10]);
    expect(relativeError(logits, expected)).toBeLessThan(1e-4);
  });

  test('a table of other heads is still refused, with both shapes', async () => {
    const swinFile = fixture('swin_tiny_test.safetensors');
    await expect(
      createModel({ ...swinTiny, windowSize: 14, numHeads: [4, 4, 8] }, { pretrained: swinFile }),
    ).rejects.toThrow(
      'layers.0.blocks.0.attn.relative_position_bias_table: the model has [729,4], the checkpoint [169,2]',
    );
  });
});

describe('named configurations', () => {
  test.each([
    'vit_base_patch16_224',
    'vit_small_patch16_224',
    'vit_base_patch16_clip_224',
    'swin_base_patch4_window7_224',
    'swin_tiny_patch4_window7_224',
  ])('%s with 100 classes has exactly the manifest names and shapes, in order', async (name) => {
    using model = await createModel(name, { numClasses: 100 });
    const manifest = JSON.parse(fs.readFileSync(fixture(`manifest.${name}.num_classes100.json`), 'utf8'));
    expect(model.parameters().map((p) => [p.name, p.shape])).toEqual(Object.entries(manifest));
  });

  test.each([
    ['vit_small_patch16_224', 22050664],
    ['vit_small_patch32_224', 22878952],
    ['vit_base_patch16_384', 86859496],
    ['swin_tiny_patch4_window7_224', 28288354],
    ['swin_base_patch4_window12_384', 87903584],
  ])('%s with 1000 classes has %i parameters (timm)', async (name, count) => {
    using model = await createModel(name);
    expect(model.numParameters()).toBe(count);
  });

  // timm's configurations, written from the facts sheet (shared/reference/timm-layouts.md, timm v0.9.12): ViT
  // D/depth/heads per size, Swin C/depths/heads per size; patch, image and window sizes from the names.
  // mlp_ratio 4 everywhere; drop_path_rate 0 for ViT and 0.1 for Swin (the constructors' defaults).
  const vitSizes: Record<string, [number, number, number]> = {
    tiny: [192, 12, 3],
    small: [384, 12, 6],
    base: [768, 12, 12],
    large: [1024, 24, 16],
  };
  const swinSizes: Record<string, [number, number[], number[]]> = {
    tiny: [96, [2, 2, 6, 2], [3, 6, 12, 24]],
    small: [96, [2, 2, 18, 2], [3, 6, 12, 24]],
    base: [128, [2, 2, 18, 2], [4, 8, 16, 32]],
  };
  const timmConfig = (name: string): ModelSpecInput => {
    const vit = /^vit_(tiny|small|base|large)_patch(\d+)(_clip)?_(\d+)(_in21k|_dino)?$/.exec(name);
    if (vit) {
      const [embedDim, depth, numHeads] = vitSizes[vit[1]];
      const [patchSize, imgSize] = [Number(vit[2]), Number(vit[4])];
      // timm's deprecated `_in21k` names stand for `.augreg_in21k` (21,843 classes), ViT-L/32's for `.orig_in21k`,
      // released without a head, which is also the default tag of ViT-L/32 at 224: timm gives a name without a tag
      // its default tag's class count
      const largeOrig = vit[1] === 'large' && patchSize === 32 && imgSize === 224;
      // (and `_dino` for `.dino`, without a head)
      const numClasses = largeOrig || vit[5] === '_dino' ? 0 : vit[5] ? 21843 : 1000;
      // timm's CLIP-style ViTs: pre_norm=True with nn.LayerNorm (eps 1e-5)
      const [preNorm, normEps] = vit[3] ? [true, 1e-5] : [false, 1e-6];
      return {
        family: 'vit',
        imgSize,
        patchSize,
        embedDim,
        depth,
        numHeads,
        mlpRatio: 4,
        numClasses,
        dropPathRate: 0,
        preNorm,
        normEps,
      };
    }
    const swin = /^swin_(tiny|small|base)_patch4_window(\d+)_(\d+)(_in22k)?$/.exec(name);
    if (!swin) throw new Error(`no timm configuration written for ${name}`);
    const [embedDim, depths, numHeads] = swinSizes[swin[1]];
    const [windowSize, imgSize] = [Number(swin[2]), Number(swin[3])];
    return {
      family: 'swin',
      imgSize,
      patchSize: 4,
      windowSize,
      embedDim,
      depths,
      numHeads,
      mlpRatio: 4,
      numClasses: swin[4] ? 21841 : 1000, // the deprecated `_in22k` names stand for `.ms_in22k`
      dropPathRate: 0.1,
    };
  };
  // timm's parameter count of a configuration, layer by layer (the sheet's §1 names and shapes).
  const timmParameterCount = (spec: ModelSpecInput): number => {
    const classes = spec.numClasses ?? 1000;
    if (spec.family === 'vit') {
      const D = spec.embedDim;
      const P = spec.patchSize ?? 16;
      const tokens = ((spec.imgSize ?? 224) / P) ** 2 + 1;
      const block = 2 * D + (3 * D * D + 3 * D) + (D * D + D) + 2 * D + (4 * D * D + 4 * D) + (4 * D * D + D);
      // pre-norm (CLIP-style): a norm_pre LayerNorm, and the patch projection without its bias
      const preNorm = spec.preNorm ? 2 * D - D : 0;
      return 3 * P * P * D + D + D + tokens * D + preNorm + spec.depth * block + 2 * D + classes * D + classes;
    }
    const w = spec.windowSize ?? 7;
    let C = spec.embedDim;
    let total = 3 * 16 * C + C + 2 * C;
    spec.depths.forEach((depth, s) => {
      if (s > 0) {
        total += 2 * 4 * C + 4 * C * 2 * C; // PatchMerging: norm(4C), reduction 4C → 2C without bias
        C *= 2;
      }
      const block = 12 * C * C + 13 * C + (2 * w - 1) ** 2 * spec.numHeads[s];
      total += depth * block;
    });
    return total + 2 * C + classes * C + classes;
  };

  test('the parameter-count formula gives the counts timm reports (facts sheet §0)', () => {
    // The CLIP-style ViT-B/16 with 100 classes: the sum of its manifest's shapes (timm's own state dict).
    const clipManifest: Record<string, number[]> = JSON.parse(
      fs.readFileSync(fixture('manifest.vit_base_patch16_clip_224.num_classes100.json'), 'utf8'),
    );
    const clipCount = Object.values(clipManifest).reduce((sum, shape) => sum + shape.reduce((n, d) => n * d, 1), 0);
    expect(timmParameterCount({ ...timmConfig('vit_base_patch16_clip_224'), numClasses: 100 })).toBe(clipCount);
    const counts: [string, number][] = [
      ['vit_tiny_patch16_224', 5717416],
      ['vit_small_patch16_224', 22050664],
      ['vit_small_patch32_224', 22878952],
      ['vit_base_patch16_224', 86567656],
      ['vit_base_patch32_224', 88224232],
      ['vit_large_patch16_224', 304326632],
      ['vit_base_patch16_384', 86859496],
      ['vit_base_patch32_384', 88297192],
      ['swin_tiny_patch4_window7_224', 28288354],
      ['swin_small_patch4_window7_224', 49606258],
      ['swin_base_patch4_window7_224', 87768224],
      ['swin_base_patch4_window12_384', 87903584],
    ];
    for (const [name, count] of counts) expect([name, timmParameterCount(timmConfig(name))]).toEqual([name, count]);
  });

  test("every listed name resolves to timm's configuration, with or without a tag; the smallest build to it", async () => {
    const names = listModels();
    // Bug: vit_tiny_patch32_* and swin_{tiny,small}_patch4_window12_384 were listed as timm's names; timm 0.9.12
    // registers none of them
    expect(names).toHaveLength(33); // with the 2 deprecated DINO names
    expect(names).toEqual(
      expect.arrayContaining(['vit_tiny_patch16_224', 'vit_large_patch32_384', 'swin_base_patch4_window12_384']),
    );
    for (const invented of ['vit_tiny_patch32_224', 'swin_small_patch4_window12_384'])
      expect([invented, resolveModelName(invented)]).toEqual([invented, undefined]);
    // Bug: without a tag ViT-L/32 had a head of 1000 classes; timm takes its default tag's, orig_in21k's: none
    expect(resolveModelName('vit_large_patch32_224')?.numClasses).toBe(0);
    // timm's deprecated DINO names
    expect(resolveModelName('vit_base_patch16_224_dino')).toEqual({
      ...timmConfig('vit_base_patch16_224'),
      numClasses: 0,
    });
    for (const name of names) {
      const expected = timmConfig(name);
      expect([name, resolveModelName(name)]).toEqual([name, expected]);
      if (!/_in2[12]k$/.test(name)) {
        expect([name, resolveModelName(`${name}.some_unknown_tag`)]).toEqual([name, expected]);
      }
    }
    // Building every one (3 billion parameters) takes minutes; these cover both families and every size axis
    // that the names encode (patch 16/32, image 224/384, window 7/12).
    for (const name of [
      'vit_tiny_patch16_224',
      'vit_tiny_patch16_384',
      'vit_small_patch32_224',
      'vit_small_patch32_384',
      'swin_tiny_patch4_window7_224',
      'swin_base_patch4_window12_384',
    ]) {
      using model = await createModel(name);
      expect([name, model.spec]).toEqual([name, timmConfig(name)]);
      expect([name, model.numParameters()]).toEqual([name, timmParameterCount(timmConfig(name))]);
    }
    using tagged = await createModel('vit_tiny_patch16_224.augreg_in21k_ft_in1k', { numClasses: 0 });
    expect(tagged.spec).toMatchObject({ embedDim: 192, depth: 12, numHeads: 3, numClasses: 0 });
    expect(tagged.numParameters()).toBe(timmParameterCount({ ...timmConfig('vit_tiny_patch16_224'), numClasses: 0 }));
    // A known pretrained tag sets the class count of its weights, as timm's pretrained_cfg does (timm 0.9.12).
    expect(resolveModelName('vit_base_patch16_clip_224.laion2b_ft_in12k')?.numClasses).toBe(11821);
    expect(resolveModelName('vit_base_patch16_224.augreg_in21k')?.numClasses).toBe(21843);
    expect(resolveModelName('swin_base_patch4_window7_224.ms_in22k')?.numClasses).toBe(21841);
    expect(resolveModelName('vit_base_patch16_224.augreg2_in21k_ft_in1k')?.numClasses).toBe(1000);
    using alias = await createModel('vit_base_patch16_224_in21k', { imgSize: 32, numClasses: undefined });
    expect(alias.spec.numClasses).toBe(21843);
  });

  test('preprocessing constants follow the family', async () => {
    using vit = await createModel('vit_tiny_patch16_224', { numClasses: 2 });
    expect(vit.preprocessing).toEqual({
      mean: [0.5, 0.5, 0.5],
      std: [0.5, 0.5, 0.5],
      interpolation: 'bicubic',
      cropPct: 0.9,
      cropMode: 'center',
      imgSize: 224,
    });
    using swin = await createModel(swinTiny);
    expect(swin.preprocessing.mean).toEqual([0.485, 0.456, 0.406]);
    expect(swin.preprocessing.std).toEqual([0.229, 0.224, 0.225]);
  });
});

describe('saving and loading', () => {
  test.each([
    ['vit_tiny_test.safetensors', vitTiny],
    ['swin_tiny_test.safetensors', swinTiny],
  ])('saveWeights after loading %s writes the same bytes timm wrote', async (file, spec) => {
    using model = await createModel(spec, { pretrained: fixture(file) });
    const out = path.join(temp.dir, `saved-${file}`);
    await model.saveWeights(out);
    expect(fs.readFileSync(out).equals(fs.readFileSync(fixture(file)))).toBe(true);
  });

  test('a seed makes the initialisation reproducible', async () => {
    const bytes = async (seed: number, name: string) => {
      using model = await createModel(vitTiny, { seed });
      const file = path.join(temp.dir, name);
      await model.saveWeights(file);
      return fs.readFileSync(file);
    };
    const [a, b, c] = [await bytes(5, 'seed-a'), await bytes(5, 'seed-b'), await bytes(6, 'seed-c')];
    expect(a.equals(b)).toBe(true);
    expect(a.equals(c)).toBe(false);
  });

  test("a seeded model's adapters and reset head draw from its own generator, whatever else draws meanwhile", async () => {
    // Bug: initialisers drew from libtorch's one global generator, so a seeded model's adapters depended on
    // what other models were created, extended or reset between its creation and its addAdapters().
    const adapters = { type: 'loramul_vptadd', rank: 2 } as const;
    const values = (model: Model) => {
      const state = model.stateDict();
      const result = Object.fromEntries(
        Object.entries(state).map(([name, t]) => [name, Array.from(t.toFloat32Array())]),
      );
      disposeTensors(state);
      return result;
    };
    let alone: Record<string, number[]>;
    {
      using model = await createModel(vitTiny, { seed: 5 });
      model.addAdapters(adapters);
      model.resetHead();
      alone = values(model);
    }
    const [a, b] = await Promise.all([createModel(vitTiny, { seed: 5 }), createModel(vitTiny, { seed: 6 })]);
    using first = a;
    using second = b;
    second.addAdapters(adapters);
    using unseeded = await createModel(vitTiny);
    second.resetHead();
    first.addAdapters(adapters);
    unseeded.addAdapters(adapters);
    first.resetHead();
    const interleaved = values(first);
    expect(Object.keys(interleaved)).toEqual(Object.keys(alone));
    for (const name of Object.keys(alone))
      expect({ name, values: interleaved[name] }).toEqual({ name, values: alone[name] });
    // torch.nn's bounds: Conv2d's default ±1/√fan_in, xavier_uniform's ±√(6 / (fan_in + fan_out)).
    const maxAbs = (name: string) => Math.max(...alone[name].map(Math.abs));
    const { patchSize, embedDim } = vitTiny as { patchSize: number; embedDim: number };
    const convBound = 1 / Math.sqrt(3 * patchSize * patchSize);
    expect(maxAbs('patch_embed.proj.weight')).toBeLessThanOrEqual(convBound);
    expect(maxAbs('patch_embed.proj.weight')).toBeGreaterThan(0.9 * convBound);
    const xavierBound = Math.sqrt(6 / (embedDim + adapters.rank));
    expect(maxAbs('blocks.0.attn.qkv.delta_W_up')).toBeLessThanOrEqual(xavierBound);
    expect(maxAbs('blocks.0.attn.qkv.delta_W_up')).toBeGreaterThan(0.8 * xavierBound);
    // The draws are random: the other models' adapters and heads differ from these.
    expect(values(second)['blocks.0.attn.qkv.delta_W_up']).not.toEqual(alone['blocks.0.attn.qkv.delta_W_up']);
    expect(values(unseeded)['head.weight']).not.toEqual(alone['head.weight']);
  });

  test('save then load round-trips a freshly initialised model bit for bit', async () => {
    using a = await createModel(vitTiny);
    const out = path.join(temp.dir, 'fresh.safetensors');
    await a.saveWeights(out);
    using b = await createModel(vitTiny, { pretrained: out });
    const saved = await loadTensors(out);
    const again = path.join(temp.dir, 'fresh-again.safetensors');
    await b.saveWeights(again);
    expect(fs.readFileSync(again).equals(fs.readFileSync(out))).toBe(true);
    expect(Object.keys(saved.tensors)).toHaveLength(a.parameters().length);
    disposeTensors(saved.tensors);
  });

  test.each([
    ['vit_tiny_test.safetensors', vitTiny],
    ['swin_tiny_test.safetensors', swinTiny],
  ])("stateDict() of a model loaded from %s holds timm's tensors, in its order, bit for bit", async (file, spec) => {
    using model = await createModel(spec, { pretrained: fixture(file) });
    const timm = await loadTensors(fixture(file));
    const state = model.stateDict();
    // timm's order is the model's registration order, which parameters() reports.
    expect(Object.keys(state)).toEqual(model.parameters().map((p) => p.name));
    expect(Object.keys(state).sort()).toEqual(Object.keys(timm.tensors).sort());
    for (const [name, value] of Object.entries(state)) {
      expect([name, value.shape]).toEqual([name, timm.tensors[name].shape]);
      expect([name, Buffer.from(value.data().buffer).equals(Buffer.from(timm.tensors[name].data().buffer))]).toEqual([
        name,
        true,
      ]);
    }
    disposeTensors(state);
    disposeTensors(timm.tensors);
  });

  test("stateDict() includes the adapters under the reference's names, as copies that later training leaves alone", async () => {
    using model = await createModel(vitTiny, { seed: 3 });
    model.addAdapters({ type: 'loramul_vptadd', rank: 2, targets: ['blocks.0.attn.qkv'] });
    const before = model.stateDict();
    expect(Object.keys(before).filter((name) => name.includes('.delta_'))).toEqual([
      'blocks.0.attn.qkv.delta_W_down',
      'blocks.0.attn.qkv.delta_W_up',
      'blocks.0.attn.qkv.delta_b',
      'blocks.0.attn.qkv.delta_prompt_down',
      'blocks.0.attn.qkv.delta_prompt_up',
    ]);
    // The down projections start at zero (the adapter starts as a no-op), the up projections do not.
    expect(before['blocks.0.attn.qkv.delta_W_down'].toFloat32Array().every((v) => v === 0)).toBe(true);
    expect(before['blocks.0.attn.qkv.delta_W_up'].toFloat32Array().some((v) => v !== 0)).toBe(true);
    const headBefore = Array.from(before['head.weight'].toFloat32Array());
    const trainer = new Trainer(model, { optimizer: { lr: 0.1 } });
    using images = tensor(
      new Float32Array(2 * 3 * 32 * 32).map((_, i) => Math.sin(i)),
      [2, 3, 32, 32],
    );
    using labels = tensor([1, 2], [2], { dtype: 'int64' });
    await trainer.trainStep(images, labels);
    const after = model.stateDict();
    expect(Array.from(before['head.weight'].toFloat32Array())).toEqual(headBefore);
    expect(Array.from(after['head.weight'].toFloat32Array())).not.toEqual(headBefore);
    disposeTensors(before);
    disposeTensors(after);
  });

  test('resetHead re-initialises only the classifier', async () => {
    using model = await createModel(vitTiny, { pretrained: fixture('vit_tiny_test.safetensors') });
    model.resetHead();
    const file = path.join(temp.dir, 'reset-head.safetensors');
    await model.saveWeights(file);
    const [ours, original] = [
      (await loadTensors(file)).tensors,
      (await loadTensors(fixture('vit_tiny_test.safetensors'))).tensors,
    ];
    for (const name of Object.keys(original)) {
      const same = Buffer.from(ours[name].data().buffer).equals(Buffer.from(original[name].data().buffer));
      expect([name, same]).toEqual([name, !name.startsWith('head.')]);
    }
    // As timm's reset_classifier (the PACE reference's head): a new nn.Linear, weight and bias uniform in ±1/√width
    // (not timm's from-scratch truncated normal of std 0.02 with a zero bias). The bound is reached within 10 % by
    // one of the 480 weights but by chance (0.9^480), and their std is b/√3 within 10 % (5 standard errors).
    const bound = 1 / Math.sqrt(ours['head.weight'].shape[1]);
    const weights = Array.from(ours['head.weight'].toFloat32Array());
    const biases = Array.from(ours['head.bias'].toFloat32Array());
    const largest = Math.max(...[...weights, ...biases].map(Math.abs));
    expect(largest).toBeLessThanOrEqual(bound);
    expect(Math.max(...weights.map(Math.abs))).toBeGreaterThan(0.9 * bound);
    const std = Math.sqrt(weights.reduce((sum, w) => sum + w * w, 0) / weights.length);
    expect(Math.abs(std / (bound / Math.sqrt(3)) - 1)).toBeLessThan(0.1);
    expect(biases.filter((b) => b !== 0)).toHaveLength(10);
    disposeTensors(ours);
    disposeTensors(original);
  });

  test('a head of another class count is re-initialised and reported', async () => {
    using model = await createModel(
      { ...vitTiny, numClasses: 5 },
      { pretrained: fixture('vit_tiny_test.safetensors') },
    );
    expect(model.loadReport?.reinitialized).toEqual(['head.weight', 'head.bias']);
    expect(model.loadReport?.loaded).not.toContain('head.weight');
    using logits = await model.forward(vitIo.tensors.input);
    expect(logits.shape).toEqual([3, 5]);
  });
});

describe('bad input gets a clear error', () => {
  test('a checkpoint for another architecture names what is missing and unexpected', async () => {
    await expect(createModel(vitTiny, { pretrained: fixture('swin_tiny_test.safetensors') })).rejects.toThrow(
      /does not match this vit model: missing cls_token, pos_embed, .*; unexpected /,
    );
  });

  test('a checkpoint of another size names the tensor and both shapes, and leaves the model unchanged', async () => {
    using model = await createModel({ ...vitTiny, mlpRatio: 2 });
    const before = path.join(temp.dir, 'before-failed-load.safetensors');
    await model.saveWeights(before);
    await expect(model.loadWeights(fixture('vit_tiny_test.safetensors'))).rejects.toThrow(
      /tensors that do not fit: blocks\.0\.mlp\.fc1\.bias: the model has \[96\], the checkpoint \[192\], blocks\.0\.mlp\.fc1\.weight: the model has \[96,48\], the checkpoint \[192,48\]/,
    );
    const after = path.join(temp.dir, 'after-failed-load.safetensors');
    await model.saveWeights(after);
    expect(fs.readFileSync(after).equals(fs.readFileSync(before))).toBe(true);
  });

  test('strict: false accepts a partial checkpoint and reports the rest', async () => {
    using model = await createModel({ ...vitTiny, depth: 4 });
    const report = await model.loadWeights(fixture('vit_tiny_test.safetensors'), { strict: false });
    expect(report.missing).toEqual(expect.arrayContaining(['blocks.3.attn.qkv.weight']));
    expect(report.unexpected).toEqual([]);
    await expect(model.loadWeights(fixture('vit_tiny_test.safetensors'))).rejects.toThrow(/missing blocks\.3\./);
  });

  test('PyTorch pickles are refused by their bytes with how to convert them; npz into Swin is refused', async () => {
    // Bug: refused by extension: a safetensors file named .bin was called a pickle, and so was a text file.
    using model = await createModel(vitTiny);
    const write = (name: string, bytes: Buffer) => {
      fs.writeFileSync(path.join(temp.dir, name), bytes);
      return path.join(temp.dir, name);
    };
    const pickle = write('model.pth', Buffer.from([0x80, 0x02, 0x7d, 0x71, 0x00, 0x2e, 0, 0, 0, 0, 0, 0]));
    await expect(model.loadWeights(pickle)).rejects.toThrow(
      `is a Python pickle (a legacy torch.save checkpoint), not safetensors. pace-peft never unpickles; convert it ` +
        `once with \`python3 -c "import torch, safetensors.torch as s; s.save_file(torch.load('${pickle}', ` +
        `map_location='cpu', weights_only=True), 'model.safetensors')"\``,
    );
    const archive = write('model.pt', Buffer.concat([Buffer.from('PK\x03\x04', 'latin1'), Buffer.alloc(60)]));
    await expect(model.loadWeights(archive)).rejects.toThrow(/is a ZIP archive .*never unpickles.*save_file/);
    const text = write('notes.bin', Buffer.from('not a checkpoint at all, just some words\n'));
    await expect(model.loadWeights(text)).rejects.toThrow(expect.objectContaining({ name: 'PaceFileError' }));
    await expect(model.loadWeights(text)).rejects.not.toThrow(/pickle/);
    const renamed = write('weights.bin', fs.readFileSync(fixture('vit_tiny_test.safetensors')));
    await expect(model.loadWeights(renamed)).resolves.toMatchObject({ missing: [], unexpected: [] });
    using swin = await createModel(swinTiny);
    await expect(swin.loadWeights(fixture('vit_tiny_test.npz'))).rejects.toThrow('.npz files hold Google ViT weights');
  });

  test('a truncated npz is an error naming the file', async () => {
    const broken = path.join(temp.dir, 'broken.npz');
    const bytes = fs.readFileSync(fixture('vit_tiny_test.npz'));
    fs.writeFileSync(broken, bytes.subarray(0, bytes.length - 200));
    using model = await createModel(vitTiny);
    await expect(model.loadWeights(broken)).rejects.toThrow(`npz file '${broken}'`);
  });

  test('an npz whose arrays would inflate to more than 64 times its bytes (and 64 MiB) is refused before inflating', async () => {
    // Bug caught (a review): only each entry was bounded (1032:1), so 100 kB of deflated zeros inflated to 100 MB.
    const zeros = Buffer.alloc(100 << 20);
    const bomb = path.join(temp.dir, 'bomb.npz');
    const header = "{'descr': '<f4', 'fortran_order': False, 'shape': (26214400,), }";
    fs.writeFileSync(bomb, numpyZip([{ name: 'Transformer/zeros.npy', data: npy(header, zeros) }], 'deflate'));
    expect(fs.statSync(bomb).size).toBeLessThan(1 << 20);
    using model = await createModel(vitTiny);
    await expect(model.loadWeights(bomb)).rejects.toThrow(
      new RegExp(`^npz file '${bomb}': its arrays would inflate to 104857\\d{3} bytes from \\d+: more than 64 times`),
    );
  });

  test('images of the wrong rank, size, channels or dtype', async () => {
    using model = await createModel(vitTiny);
    const cases: [number[], 'float32' | 'uint8'][] = [
      [[3, 32, 32], 'float32'],
      [[1, 3, 48, 48], 'float32'],
      [[1, 1, 32, 32], 'float32'],
      [[1, 32, 32, 3], 'float32'],
      [[1, 3, 32, 32], 'uint8'],
    ];
    for (const [shape, dtype] of cases) {
      using images = tensor(new Uint8Array(shape.reduce((a, b) => a * b, 1) * (dtype === 'uint8' ? 1 : 4)), shape, {
        dtype,
      });
      await expect(model.forward(images)).rejects.toThrow(
        `images must be a float tensor [batch, 3, 32, 32] for this vit model; got ${dtype} [${shape.join(',')}]`,
      );
    }
  });

  test('invalid specs and unknown names fail before native work, naming the field', async () => {
    await expect(createModel('vit_gigantic_patch16_224')).rejects.toThrow("unknown model 'vit_gigantic_patch16_224'");
    await expect(createModel({ ...vitTiny, depth: 0 })).rejects.toThrow(/^spec\.depth: /);
    await expect(createModel({ ...vitTiny, embedDim: 50 })).rejects.toThrow(
      'embedDim 50 is not a multiple of numHeads 3',
    );
    await expect(createModel({ ...swinTiny, depths: [2, 2] })).rejects.toThrow(
      'depths has 2 stages but numHeads has 3',
    );
  });

  test('a disposed model refuses work, saying so before anything about its adapters', async () => {
    const model = await createModel(vitTiny);
    model.addAdapters({ rank: 2 });
    model.dispose();
    await expect(model.forward(vitIo.tensors.input)).rejects.toThrow('Model was disposed');
    // Bug: these spoke of the adapters the disposed model had ("already has loramul_vptadd adapters").
    expect(() => model.addAdapters()).toThrow('Model was disposed');
    using bare = await createModel(vitTiny);
    bare.dispose();
    await expect(bare.loadAdapters('adapters.safetensors')).rejects.toThrow('Model was disposed');
    await expect(bare.saveAdapters('adapters.safetensors')).rejects.toThrow('Model was disposed');
  });
});

describe('training mode', () => {
  test('stochastic depth is active only in training, and only when its rate is above 0', async () => {
    using model = await createModel(
      { ...vitTiny, dropPathRate: 0.5 },
      { pretrained: fixture('vit_tiny_test.safetensors') },
    );
    using evalLogits = await model.forward(vitIo.tensors.input);
    expect(relativeError(evalLogits, vitIo.tensors.logits)).toBeLessThan(1e-4);
    model.train();
    expect(model.training).toBe(true);
    using a = await model.forward(vitIo.tensors.input);
    using b = await model.forward(vitIo.tensors.input);
    expect(relativeError(a, b)).toBeGreaterThan(1e-3);

    using plain = await createModel(vitTiny, { pretrained: fixture('vit_tiny_test.safetensors') });
    plain.train();
    using trained = await plain.forward(vitIo.tensors.input);
    expect(relativeError(trained, vitIo.tensors.logits)).toBeLessThan(1e-4);
  });
});

test('random corruption of an npz never crashes: each load succeeds or is rejected with a named error', async () => {
  const original = fs.readFileSync(fixture('vit_tiny_test.npz'));
  const file = path.join(temp.dir, 'fuzzed.npz');
  using model = await createModel(vitTiny);
  let seed = 99;
  const random = () => {
    seed = (seed * 1103515245 + 12345) % 2 ** 31;
    return seed / 2 ** 31;
  };
  let rejected = 0;
  for (let round = 0; round < 150; round++) {
    const bytes = Buffer.from(original);
    // Corrupt the archive's structure: local headers and .npy headers at the start, the directory at the end.
    for (let i = 0; i < 3; i++) {
      const where = random() < 0.5 ? Math.floor(random() * 200) : bytes.length - 1 - Math.floor(random() * 3000);
      bytes[where] = Math.floor(random() * 256);
    }
    fs.writeFileSync(file, bytes);
    try {
      await model.loadWeights(file);
    } catch (error) {
      expect((error as Error).message).toMatch(new RegExp(`(npz file|checkpoint) '${file}'`));
      rejected++;
    }
  }
  expect(rejected).toBeGreaterThan(30);
});

describe('hostile .npz files', () => {
  const load = async (name: string, bytes: Buffer) => {
    const file = path.join(temp.dir, name);
    fs.writeFileSync(file, bytes);
    using model = await createModel(vitTiny);
    return model.loadWeights(file);
  };

  test('a huge or malformed .npy header, an object array and an overflowing shape are refused by name', async () => {
    const huge = npy(`{'descr': '${'x'.repeat(200000)}', 'fortran_order': False, 'shape': (1,), }`, Buffer.alloc(4), 2);
    await expect(load('huge.npz', storedZip([{ name: 'cls.npy', data: huge }]))).rejects.toThrow(
      'the .npy header claims',
    );
    const objects = npy("{'descr': '|O', 'fortran_order': False, 'shape': (1,), }", Buffer.alloc(8));
    await expect(load('objects.npz', storedZip([{ name: 'cls.npy', data: objects }]))).rejects.toThrow(
      'holds Python objects (a pickle); refused',
    );
    const overflow = npy(
      "{'descr': '<f8', 'fortran_order': False, 'shape': (1099511627776, 2097152), }",
      Buffer.alloc(0),
    );
    await expect(load('overflow.npz', storedZip([{ name: 'cls.npy', data: overflow }]))).rejects.toThrow(
      'absurd shape',
    );
    const noShape = npy("{'descr': '<f4', 'fortran_order': False, }", Buffer.alloc(4));
    await expect(load('no-shape.npz', storedZip([{ name: 'cls.npy', data: noShape }]))).rejects.toThrow(
      "malformed .npy header (no 'shape')",
    );
  });

  test("the file's own text in a message has its control characters escaped and is cut short", async () => {
    // Bug (review): an entry's name (up to 64 KiB of any bytes) and a whole malformed header were echoed raw.
    const cls = npy("{'descr': '<f4', 'fortran_order': False, 'shape': (1, 1, 5), }", Buffer.alloc(20));
    const named = [
      { name: 'cls\u001b[2J.npy', data: cls },
      { name: 'cls\u001b[2J', data: cls },
    ];
    await expect(load('escaped-name.npz', storedZip(named))).rejects.toThrow("names the array 'cls\\x1b[2J' twice");
    const header = `{'descr': '<f4', 'fortran_order': Maybe, 'shape': (1,), ${'x'.repeat(5000)}}`;
    const error = await load('long-header.npz', storedZip([{ name: 'cls.npy', data: npy(header, Buffer.alloc(4)) }]))
      .then(() => undefined)
      .catch((caught: Error) => caught);
    expect(error?.message).toContain(
      `malformed .npy header ('fortran_order'): ${header.slice(0, 200)}... (${header.length} bytes)`,
    );
    expect(error?.message.length).toBeLessThan(600);
  });

  test('a shape with a 0 whose other dimensions overflow is refused, as libtorch could not make its strides', async () => {
    // Bug (review): the 0 made the element count 0, so the overflow of the others (2^80) went unchecked into
    // libtorch's stride arithmetic (undefined behaviour in 1.13; an unnamed internal error in 2.x).
    const zeroed = npy(
      "{'descr': '<f4', 'fortran_order': False, 'shape': (0, 1099511627776, 1099511627776), }",
      Buffer.alloc(0),
    );
    await expect(load('zero-overflow.npz', storedZip([{ name: 'cls.npy', data: zeroed }]))).rejects.toThrow(
      'absurd shape (0, 1099511627776, 1099511627776)',
    );
  });

  test('a zip64 directory claiming more entries than a weights file holds is refused before it is read', async () => {
    // Bug (review): every record was read into memory first (40 million in a 2 GB file: ~10 GB) and only then
    // found to overlap. The count is checked first, against the cap and against what the file can hold.
    const cls = npy("{'descr': '<f4', 'fortran_order': False, 'shape': (1, 1, 5), }", Buffer.alloc(20));
    const zip64 = (count: number) => {
      const plain = storedZip([{ name: 'cls.npy', data: cls }]);
      const endAt = plain.length - 22;
      const directoryOffset = plain.readUInt32LE(endAt + 16);
      const record = Buffer.alloc(56);
      record.writeUInt32LE(0x06064b50, 0);
      record.writeBigUInt64LE(44n, 4);
      record.writeBigUInt64LE(BigInt(count), 24);
      record.writeBigUInt64LE(BigInt(count), 32);
      record.writeBigUInt64LE(BigInt(endAt - directoryOffset), 40);
      record.writeBigUInt64LE(BigInt(directoryOffset), 48);
      const locator = Buffer.alloc(20);
      locator.writeUInt32LE(0x07064b50, 0);
      locator.writeBigUInt64LE(BigInt(endAt), 8);
      locator.writeUInt32LE(1, 16);
      return Buffer.concat([plain.subarray(0, endAt), record, locator, plain.subarray(endAt)]);
    };
    await expect(load('one.npz', zip64(1))).rejects.toThrow(/does not match this vit model/); // read as it is
    await expect(load('many.npz', zip64(100_001))).rejects.toThrow(
      'its directory lists 100001 entries, more than the 100000 arrays a weights file may hold',
    );
    await expect(load('more-than-fit.npz', zip64(50_000))).rejects.toThrow(
      'corrupt central directory (more entries than the file can hold)',
    );
  });

  test('entries sharing one copy of the data, or one name, are refused before anything is decoded', async () => {
    // Bug: every directory entry was decoded into its own tensor, so 300 entries pointing at one deflated 4 MiB
    // array (a 20 KB file) took 1.2 GB before the names were looked at.
    const cls = npy("{'descr': '<f4', 'fortran_order': False, 'shape': (1, 1, 5), }", Buffer.alloc(20));
    const shared = [
      { name: 'cls.npy', data: cls },
      ...[1, 2, 3].map((i) => ({ name: `a${i}.npy`, data: cls, sameDataAs: 0 })),
    ];
    await expect(load('shared.npz', storedZip(shared))).rejects.toThrow(
      "entries 'cls.npy' and 'a1.npy' overlap (a zip's entries share no bytes)",
    );
    const twice = [
      { name: 'cls.npy', data: cls },
      { name: 'cls', data: cls },
    ];
    await expect(load('twice.npz', storedZip(twice))).rejects.toThrow("names the array 'cls' twice");
  });

  test('a well-formed crafted .npz of the wrong layout is an error, not a crash', async () => {
    const cls = npy("{'descr': '<f4', 'fortran_order': False, 'shape': (1, 1, 5), }", Buffer.alloc(20));
    await expect(load('wrong.npz', storedZip([{ name: 'cls.npy', data: cls }]))).rejects.toThrow(
      /does not match this vit model/,
    );
  });
});

test('NaN and infinite pixels flow through a forward without crashing (the logits say so)', async () => {
  using model = await createModel(vitTiny, { pretrained: fixture('vit_tiny_test.safetensors') });
  const values = new Float32Array(3 * 32 * 32).fill(0.1);
  values[5] = Number.NaN;
  values[6] = Number.POSITIVE_INFINITY;
  using images = tensor(values, [1, 3, 32, 32]);
  using logits = await model.forward(images);
  expect(logits.shape).toEqual([1, 10]);
  expect(Array.from(logits.toFloat32Array()).some(Number.isNaN)).toBe(true);
});

test("a headless ViT's features are their own memory, not a view holding every token", async () => {
  // Bug (review): forward returned the class token as a view of the [B, T, D] tokens, so each batch's features
  // held all 257 tokens alive (257 times their size), for as long as a feature-extraction loop kept them.
  using model = await createModel(
    { family: 'vit', imgSize: 64, patchSize: 4, embedDim: 64, depth: 1, numHeads: 2, numClasses: 0 },
    { seed: 1 },
  );
  using input = tensor(
    new Float32Array(8 * 3 * 64 * 64).map((_, i) => Math.sin(i)),
    [8, 3, 64, 64],
  );
  const before = memoryStats().tensorBytes;
  using features = await model.forward(input);
  expect(features.shape).toEqual([8, 64]);
  expect(memoryStats().tensorBytes - before).toBe(8 * 64 * 4);
  using tokens = await model.forwardFeatures(input);
  const all = tokens.toFloat32Array();
  expect(Array.from(features.toFloat32Array())).toEqual(
    Array.from({ length: 8 * 64 }, (_, i) => all[Math.floor(i / 64) * 257 * 64 + (i % 64)]),
  );
});
