// What loading refuses before it changes a model: adapter files whose recorded configuration is unreadable or
// another model's, weights holding NaN or infinities, npz paths that are not regular files, and a position
// embedding that cannot be resized; each error names the file.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

import { createModel, loadTensors, saveTensors, tensor, type Model, type TensorRecord } from '../lib';
import { makeTempDir } from './support/paths';
import { mapTensorFile } from './support/tensor-files';
import { tinyVit } from './support/synthetic';

const temp = makeTempDir('loading-guards');
afterAll(() => temp.cleanup());

const file = (name: string) => path.join(temp.dir, name);

async function adapted(options: { type?: 'loramul_vptadd' | 'loraadd_vptadd'; targets?: string[] } = {}) {
  const model = await createModel(tinyVit, { seed: 1 });
  model.addAdapters({ rank: 2, ...options });
  return model;
}

let shiftedFiles = 0;

/**
 * As adapted(), with every adapter and head tensor moved by 0.5 from the values adapted() gives: the files these
 * tests load hold adapted()'s values, so a load that wrote any tensor before refusing shows in this model's bytes.
 */
async function differentlyAdapted() {
  const model = await adapted();
  const own = file(`shifted-${shiftedFiles++}.safetensors`);
  await model.saveAdapters(own);
  await mapTensorFile(own, own, (values) => values.map((v) => v + 0.5));
  await model.loadAdapters(own);
  return model;
}

function bytesOf(model: Model): string {
  return JSON.stringify(
    Object.entries(model.stateDict()).map(([name, t]) => {
      const bytes = Array.from(t.toFloat32Array());
      t.dispose();
      return [name, bytes];
    }),
  );
}

describe('adapter files', () => {
  test('recorded metadata that is not JSON, not a configuration, or of another model is refused by file', async () => {
    // Bug caught: the metadata was JSON.parse'd unguarded (a bare SyntaxError, no path), and only type and rank
    // were compared, so a Swin file or other targets reached the native loader or loaded.
    using source = await adapted();
    const saved = file('adapters.safetensors');
    await source.saveAdapters(saved);
    const { tensors, metadata } = await loadTensors(saved);
    const recorded = JSON.parse(metadata!['pace_peft.adapters']) as Record<string, unknown>;
    const cases: [string, string][] = [
      ['{not json', `adapter file '${file('edited.safetensors')}': its 'pace_peft.adapters' metadata is not JSON`],
      ['null', "its 'pace_peft.adapters' metadata is not an adapter configuration"],
      [JSON.stringify({ ...recorded, rank: 'two' }), 'is not an adapter configuration (rank:'],
      [
        JSON.stringify({ ...recorded, family: 'swin', model: 'swin_tiny' }),
        'was saved from a swin backbone (swin_tiny)',
      ],
    ];
    for (const [value, expected] of cases) {
      await saveTensors(file('edited.safetensors'), tensors, {
        metadata: { ...metadata, 'pace_peft.adapters': value },
      });
      using target = await differentlyAdapted();
      const before = bytesOf(target);
      await expect(target.loadAdapters(file('edited.safetensors'))).rejects.toThrow(expected);
      expect(bytesOf(target)).toBe(before);
    }
    using target = await differentlyAdapted();
    expect(bytesOf(target)).not.toBe(bytesOf(source));
    await target.loadAdapters(saved);
    expect(bytesOf(target)).toBe(bytesOf(source));
    for (const t of Object.values(tensors)) t.dispose();
  });

  test('targets are compared by the linears they select: other linears are refused, another spelling of the same loads', async () => {
    // Bug (review): the targets were compared as strings, so ['qkv', 'proj', 'fc1', 'fc2'] (every linear of a ViT
    // but the head) was refused by a model adapted by default, though every tensor fitted.
    using fewer = await adapted({ targets: ['attn.qkv'] });
    await fewer.saveAdapters(file('qkv-only.safetensors'));
    using target = await differentlyAdapted();
    const before = bytesOf(target);
    await expect(target.loadAdapters(file('qkv-only.safetensors'))).rejects.toThrow(
      `adapter file '${file('qkv-only.safetensors')}' adapts attn.qkv; this model adapts every linear but the head`,
    );
    expect(bytesOf(target)).toBe(before);
    // a file whose recorded targets say fewer than its tensors hold is refused all the same, by its tensors
    using all = await adapted();
    await all.saveAdapters(file('all.safetensors'));
    const whole = await loadTensors(file('all.safetensors'));
    const claimed = JSON.stringify({ ...JSON.parse(whole.metadata!['pace_peft.adapters']), targets: ['attn.qkv'] });
    await saveTensors(file('claims-fewer.safetensors'), whole.tensors, {
      metadata: { ...whole.metadata, 'pace_peft.adapters': claimed },
    });
    using claimsFewer = await adapted({ targets: ['attn.qkv'] });
    await expect(claimsFewer.loadAdapters(file('claims-fewer.safetensors'))).rejects.toThrow(
      'blocks.0.attn.proj.delta_W_down is not a trainable parameter of this model',
    );
    for (const t of Object.values(whole.tensors)) t.dispose();
    // every linear named one by one, or by suffixes: the same linears as the default, so the file loads
    for (const targets of [
      ['qkv', 'proj', 'fc1', 'fc2'],
      ['attn.qkv', 'attn.proj', 'mlp.fc1', 'mlp.fc2'],
    ]) {
      using named = await adapted({ targets });
      await named.saveAdapters(file('named.safetensors'));
      using byDefault = await differentlyAdapted();
      await byDefault.loadAdapters(file('named.safetensors'));
      expect(bytesOf(byDefault)).toBe(bytesOf(named));
    }
  });

  test('an adapter file holding NaN or infinities is refused, naming the tensor', async () => {
    using source = await adapted();
    await source.saveAdapters(file('finite.safetensors'));
    const { tensors, metadata } = await loadTensors(file('finite.safetensors'));
    const name = Object.keys(tensors).find((key) => key.includes('delta'))!;
    const values = tensors[name].toFloat32Array();
    values[values.length - 1] = Number.NaN;
    const poisoned: TensorRecord = { ...tensors, [name]: tensor(values, tensors[name].shape) };
    await saveTensors(file('nan.safetensors'), poisoned, { metadata: metadata ?? {} });
    using target = await differentlyAdapted();
    const before = bytesOf(target);
    await expect(target.loadAdapters(file('nan.safetensors'))).rejects.toThrow(
      `adapter file '${file('nan.safetensors')}': '${name}' holds NaN or infinite values`,
    );
    expect(bytesOf(target)).toBe(before);
    for (const t of [...Object.values(tensors), poisoned[name]]) t.dispose();
  });
});

describe('a file replaced between its check and its load', () => {
  test('an adapter file is refused, naming it; the model keeps its own', async () => {
    // Bug caught: the metadata was checked on this thread and the native load reopened the file later: adapters of
    // other frozen weights, put in its place meanwhile, loaded unchecked.
    using plain = await createModel(tinyVit, { seed: 1 });
    await plain.saveWeights(file('race-weights.safetensors'));
    using elsewhere = await createModel(tinyVit, { seed: 2 });
    elsewhere.addAdapters({ rank: 2 });
    await elsewhere.saveAdapters(file('race-other.safetensors'));
    using target = await adapted();
    await target.saveAdapters(file('race.safetensors'));
    await expect(target.loadAdapters(file('race-other.safetensors'))).rejects.toThrow(
      'was trained on other frozen weights',
    );
    const before = bytesOf(target);
    // While weights load, the frozen fingerprint is pending: the adapter load is queued after them, once the
    // file below has been replaced.
    const reloading = target.loadWeights(file('race-weights.safetensors'));
    const loading = target.loadAdapters(file('race.safetensors'));
    fs.copyFileSync(file('race-other.safetensors'), file('race.safetensors'));
    await reloading;
    await expect(loading).rejects.toThrow(
      `'${file('race.safetensors')}' changed while it was being loaded: its metadata is no longer what was read and ` +
        'checked (was it rewritten meanwhile?); load it again once it is complete',
    );
    expect(bytesOf(target)).toBe(before);
  });

  test('a weights file is refused, naming it, when its metadata is not what the model read before the load', async () => {
    // A weights load starts at once, so the replacement cannot be staged between check and load from here: the
    // native load is given metadata other than the file's, as it would be after a replacement.
    using source = await createModel(tinyVit, { seed: 2 });
    await source.saveWeights(file('race-backbone.safetensors'), { metadata: { origin: 'new' } });
    using target = await createModel(tinyVit, { seed: 1 });
    const before = bytesOf(target);
    await expect(
      target.nativeHandle.loadWeights(file('race-backbone.safetensors'), true, { origin: 'old' }),
    ).rejects.toThrow(`'${file('race-backbone.safetensors')}' changed while it was being loaded`);
    expect(bytesOf(target)).toBe(before);
    await target.nativeHandle.loadWeights(file('race-backbone.safetensors'), true, { origin: 'new' });
    expect(bytesOf(target)).not.toBe(before);
  });
});

describe('backbone weights', () => {
  test('a float64 value beyond float32 is refused as infinite, in weights and adapter files alike', async () => {
    // Bug: finiteness was checked in the file's dtype, before the copy into float32: 1e300 loaded as Infinity.
    using source = await adapted();
    const weights = source.stateDict();
    const norm = Float64Array.from(weights['norm.bias'].toFloat32Array());
    norm[0] = 1e300;
    weights['norm.bias'].dispose();
    weights['norm.bias'] = tensor(norm, [norm.length]);
    await saveTensors(file('f64-weights.safetensors'), weights);
    for (const t of Object.values(weights)) t.dispose();
    // Another seed's backbone: every tensor of the file differs from this model's.
    using otherBackbone = await createModel(tinyVit, { seed: 2 });
    otherBackbone.addAdapters({ rank: 2 });
    const otherBefore = bytesOf(otherBackbone);
    await expect(otherBackbone.loadWeights(file('f64-weights.safetensors'), { strict: false })).rejects.toThrow(
      'norm.bias: holds NaN or infinite values in float32',
    );
    expect(bytesOf(otherBackbone)).toBe(otherBefore);

    using target = await differentlyAdapted();
    const before = bytesOf(target);

    await source.saveAdapters(file('f64-source.safetensors'));
    const { tensors, metadata } = await loadTensors(file('f64-source.safetensors'));
    const name = Object.keys(tensors).find((key) => key.includes('delta'))!;
    const values = Float64Array.from(tensors[name].toFloat32Array());
    values[0] = -1e300;
    const poisoned: TensorRecord = { ...tensors, [name]: tensor(values, tensors[name].shape) };
    await saveTensors(file('f64-adapters.safetensors'), poisoned, { metadata: metadata ?? {} });
    await expect(target.loadAdapters(file('f64-adapters.safetensors'))).rejects.toThrow(
      `'${name}' holds NaN or infinite values in float32`,
    );
    expect(bytesOf(target)).toBe(before);
    for (const t of [...Object.values(tensors), poisoned[name]]) t.dispose();
  });

  test('weights holding infinities are refused, naming the file and the tensor; the model keeps its own', async () => {
    using source = await createModel(tinyVit, { seed: 2 });
    const weights = source.stateDict();
    const { shape } = weights['blocks.0.attn.qkv.weight'];
    const values = weights['blocks.0.attn.qkv.weight'].toFloat32Array();
    values[3] = Number.POSITIVE_INFINITY;
    weights['blocks.0.attn.qkv.weight'].dispose();
    weights['blocks.0.attn.qkv.weight'] = tensor(values, shape);
    await saveTensors(file('inf.safetensors'), weights);
    using target = await createModel(tinyVit, { seed: 3 });
    const before = bytesOf(target);
    // The file is at fault, not the model it was made for: a PaceFileError, not a ShapeError.
    await expect(target.loadWeights(file('inf.safetensors'))).rejects.toThrow(
      expect.objectContaining({
        name: 'PaceFileError',
        message:
          `checkpoint '${file('inf.safetensors')}' holds values that are not finite (a damaged file, or one saved ` +
          'from a diverged model): blocks.0.attn.qkv.weight: holds NaN or infinite values',
      }),
    );
    expect(bytesOf(target)).toBe(before);
    for (const t of Object.values(weights)) t.dispose();
  });

  test('a position embedding whose grid is not square is refused, naming the file', async () => {
    using source = await createModel(tinyVit, { seed: 2 });
    const weights = source.stateDict();
    const dim = weights.pos_embed.shape[2];
    weights.pos_embed.dispose();
    weights.pos_embed = tensor(new Float32Array((1 + 5) * dim), [1, 6, dim]); // 5 grid tokens
    await saveTensors(file('grid.safetensors'), weights);
    using target = await createModel(tinyVit, { seed: 3 });
    await expect(target.loadWeights(file('grid.safetensors'))).rejects.toThrow(
      new RegExp(
        `checkpoint '${file('grid.safetensors')}' .*pos_embed: the checkpoint's 5 grid tokens are not a square grid`,
      ),
    );
    for (const t of Object.values(weights)) t.dispose();
  });

  test('an npz path that is a FIFO or a folder is refused at once, naming it', async () => {
    // Bug caught: the npz reader opened a FIFO blocking (the process hung past exit) and read a folder into a
    // libstdc++ error without the path.
    const fifo = file('fifo.npz');
    execFileSync('mkfifo', [fifo]);
    const folder = file('folder.npz');
    fs.mkdirSync(folder);
    using target = await createModel(tinyVit, { seed: 3 });
    for (const bad of [fifo, folder]) {
      await expect(target.loadWeights(bad)).rejects.toThrow(`npz file '${bad}': is not a regular file`);
    }
  });
});
