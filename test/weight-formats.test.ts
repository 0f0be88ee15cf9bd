// Checkpoint formats the README promises to read but no other suite builds: timm's pre-0.9 Swin layout, Google
// npz files that still carry `pre_logits`, and npz members compressed with DEFLATE (numpy's savez_compressed).
// Each checkpoint is derived here, in TypeScript, from a fixture whose timm logits are known, so a loader that
// mishandles the format either refuses the file or gives other logits.
import fs from 'node:fs';
import path from 'node:path';

import {
  createModel,
  disposeTensors,
  loadTensors,
  saveTensors,
  tensor,
  type ModelSpecInput,
  type Tensor,
  type TensorFile,
} from '../lib';
import { relativeError } from './support/compare';
import { fixture, fixtureSpec } from './support/fixtures';
import { makeTempDir } from './support/paths';
import { npy, numpyZip, readZip } from './support/zip';

const temp = makeTempDir('weight-formats');
afterAll(() => temp.cleanup());

const vitTiny = fixtureSpec('vit_tiny_test') as Extract<ModelSpecInput, { family: 'vit' }>;
const swinTiny = fixtureSpec('swin_tiny_test') as Extract<ModelSpecInput, { family: 'swin' }>;

let vitIo: TensorFile;
let swinIo: TensorFile;
beforeAll(async () => {
  vitIo = await loadTensors(fixture('vit_tiny_test.io.safetensors'));
  swinIo = await loadTensors(fixture('swin_tiny_test.io.safetensors'));
});
afterAll(() => [vitIo, swinIo].forEach((io) => disposeTensors(io.tensors)));

/** timm 0.9's names back to the pre-0.9 ones (timm-layouts.md §1): PatchMerging one stage earlier, `head.*`. */
function preV09SwinName(name: string): string {
  const downsample = /^layers\.(\d+)\.downsample\.(.*)$/.exec(name);
  if (downsample) return `layers.${Number(downsample[1]) - 1}.downsample.${downsample[2]}`;
  return name.startsWith('head.fc.') ? `head.${name.slice('head.fc.'.length)}` : name;
}

async function rewriteSafetensors(
  source: string,
  target: string,
  rename: (name: string) => string,
  extra: Record<string, Tensor> = {},
): Promise<string[]> {
  const { tensors } = await loadTensors(fixture(source));
  const renamed: Record<string, Tensor> = { ...extra };
  for (const [name, value] of Object.entries(tensors)) renamed[rename(name)] = value;
  await saveTensors(target, renamed);
  disposeTensors(tensors);
  return Object.keys(renamed);
}

describe('pre-0.9 Swin checkpoints (PatchMerging at the end of the previous stage, head.* for head.fc.*)', () => {
  // Bug caught: an old-layout file refused as "unexpected layers.0.downsample.*", or loaded with the merging
  // weights of the wrong stage or without the head (other logits).
  test.each(['swin_tiny_test.safetensors', 'swin_tiny_test.with-buffers.safetensors'])(
    'an old-layout file rebuilt from %s loads strictly to timm logits',
    async (source) => {
      const file = path.join(temp.dir, `old-${source}`);
      const names = await rewriteSafetensors(source, file, preV09SwinName);
      // The file really is in the old layout: what the remap must undo.
      expect(names).toContain('layers.0.downsample.reduction.weight');
      expect(names).toContain('head.weight');
      expect(names.some((n) => n.startsWith('head.fc.') || n.startsWith('layers.2.downsample.'))).toBe(false);

      using model = await createModel(swinTiny, { pretrained: file });
      const report = model.loadReport;
      expect(report?.missing).toEqual([]);
      expect(report?.unexpected).toEqual([]);
      expect(report?.reinitialized).toEqual([]);
      expect(report?.loaded).toEqual(
        expect.arrayContaining([
          'layers.1.downsample.reduction.weight',
          'layers.2.downsample.norm.weight',
          'head.fc.weight',
          'head.fc.bias',
        ]),
      );
      using logits = await model.forward(swinIo.tensors.input);
      expect(relativeError(logits, swinIo.tensors.logits)).toBeLessThan(1e-4);
      using features = await model.forwardFeatures(swinIo.tensors.input);
      expect(relativeError(features, swinIo.tensors.features)).toBeLessThan(1e-4);
    },
  );
});

describe("Swin's own files", () => {
  test('a headless Swin reloads the weights it saved (its file is not taken for the pre-0.9 layout)', async () => {
    // Bug: a file without head.fc.weight was taken for the old layout, so a headless model's own file had its
    // downsample layers moved one stage up and was refused as not fitting.
    const headless = { ...swinTiny, numClasses: 0 };
    // A classifier's checkpoint loads into a headless model strictly, its head ignored, as timm does (bug: refused
    // as "unexpected head.fc.bias, head.fc.weight").
    using source = await createModel(headless, { pretrained: fixture('swin_tiny_test.safetensors') });
    expect(source.loadReport?.ignored).toEqual(expect.arrayContaining(['head.fc.weight', 'head.fc.bias']));
    const file = path.join(temp.dir, 'swin-headless.safetensors');
    await source.saveWeights(file);
    using reloaded = await createModel(headless, { pretrained: file });
    expect(reloaded.loadReport?.missing).toEqual([]);
    expect(reloaded.loadReport?.unexpected).toEqual([]);
    using expected = await source.forwardFeatures(swinIo.tensors.input);
    using actual = await reloaded.forwardFeatures(swinIo.tensors.input);
    expect(relativeError(actual, expected)).toBe(0);
  });

  test("a bias for a linear without one (a merged model's) gets the same dtype and finiteness checks", async () => {
    // Bug: such a bias was checked for its shape only: NaN values and an integer tensor were loaded as they were.
    const name = 'layers.1.downsample.reduction.bias';
    using reference = await createModel(swinTiny);
    const state = reference.stateDict();
    const width = state['layers.1.downsample.reduction.weight'].shape[0];
    disposeTensors(state);
    const cases: [string, Tensor, string][] = [
      ['nan-bias', tensor(new Float32Array(width).fill(Number.NaN), [width]), 'holds NaN or infinite values'],
      [
        'int-bias',
        tensor(new BigInt64Array(width).fill(7n), [width]),
        'expected a float tensor, the checkpoint has int64',
      ],
    ];
    for (const [label, bias, problem] of cases) {
      const file = path.join(temp.dir, `swin-${label}.safetensors`);
      await rewriteSafetensors('swin_tiny_test.safetensors', file, (n) => n, { [name]: bias });
      await expect(createModel(swinTiny, { pretrained: file })).rejects.toThrow(`${name}: ${problem}`);
    }
  });
});

test('an adapted model loads a plain checkpoint strictly: its adapters are not missing from it', async () => {
  // Bug: every delta_* parameter counted as missing, so strict loading refused every plain checkpoint.
  using model = await createModel(vitTiny, { seed: 5 });
  model.addAdapters({ type: 'loraadd', rank: 4 });
  const report = await model.loadWeights(fixture('vit_tiny_test.safetensors'));
  expect(report.missing).toEqual([]);
  using headless = await createModel(
    { ...vitTiny, numClasses: 0 },
    { pretrained: fixture('vit_tiny_test.safetensors') },
  );
  expect(headless.loadReport?.ignored).toEqual(expect.arrayContaining(['head.weight', 'head.bias']));
});

describe('pre_logits (README: dropped, as timm does)', () => {
  // Bug caught: a checkpoint with Google's representation layer refused under strict loading, or its arrays
  // loaded somewhere (other logits).
  test('a safetensors state dict with pre_logits.fc.* loads strictly, reporting them as ignored', async () => {
    const file = path.join(temp.dir, 'vit-pre-logits.safetensors');
    using weight = tensor(new Float32Array(48 * 48).fill(0.5), [48, 48]);
    using bias = tensor(new Float32Array(48).fill(1), [48]);
    await rewriteSafetensors('vit_tiny_test.safetensors', file, (n) => n, {
      'pre_logits.fc.weight': weight,
      'pre_logits.fc.bias': bias,
    });
    using model = await createModel(vitTiny, { pretrained: file });
    expect(model.loadReport?.ignored.sort()).toEqual(['pre_logits.fc.bias', 'pre_logits.fc.weight']);
    expect(model.loadReport?.unexpected).toEqual([]);
    using logits = await model.forward(vitIo.tensors.input);
    expect(relativeError(logits, vitIo.tensors.logits)).toBeLessThan(1e-4);
  });

  test('a Google npz with pre_logits/kernel and pre_logits/bias loads strictly, reporting them as ignored', async () => {
    const members = readZip(fs.readFileSync(fixture('vit_tiny_test.npz')));
    expect(members.some((m) => m.name.startsWith('pre_logits'))).toBe(false);
    const kernel = Buffer.from(new Float32Array(48 * 48).fill(0.5).buffer);
    const bias = Buffer.from(new Float32Array(48).fill(1).buffer);
    const file = path.join(temp.dir, 'vit-pre-logits.npz');
    fs.writeFileSync(
      file,
      numpyZip(
        [
          ...members,
          { name: 'pre_logits/kernel.npy', data: npyFloat32([48, 48], kernel) },
          { name: 'pre_logits/bias.npy', data: npyFloat32([48], bias) },
        ],
        'stored',
      ),
    );
    using model = await createModel(vitTiny, { pretrained: file });
    expect(model.loadReport?.ignored.sort()).toEqual(['pre_logits/bias', 'pre_logits/kernel']);
    expect(model.loadReport?.unexpected).toEqual([]);
    expect(model.loadReport?.missing).toEqual([]);
    using logits = await model.forward(vitIo.tensors.input);
    expect(relativeError(logits, vitIo.tensors.logits)).toBeLessThan(1e-4);
  });
});

describe('npz members compressed with DEFLATE (numpy.savez_compressed)', () => {
  // Bug caught: deflated members refused ("unsupported compression method 8"), or inflated wrongly.
  test('the fixture npz re-packed with every member deflated loads to the same logits as the stored one', async () => {
    const members = readZip(fs.readFileSync(fixture('vit_tiny_test.npz')));
    expect(members.every((m) => m.method === 0)).toBe(true);
    const file = path.join(temp.dir, 'vit-deflated.npz');
    const zip = numpyZip(members, 'deflate');
    fs.writeFileSync(file, zip);
    // Really compressed: every member method 8 and smaller on disk than raw.
    const written = readZip(zip);
    expect(written.every((m) => m.method === 8 && m.compressedSize < m.data.length)).toBe(true);
    expect(written.map((m) => m.name)).toEqual(members.map((m) => m.name));
    written.forEach((m, i) => expect(m.data.equals(members[i].data)).toBe(true));

    using stored = await createModel(vitTiny, { pretrained: fixture('vit_tiny_test.npz') });
    using deflated = await createModel(vitTiny, { pretrained: file });
    expect(deflated.loadReport).toEqual(stored.loadReport);
    using a = await stored.forward(vitIo.tensors.input);
    using b = await deflated.forward(vitIo.tensors.input);
    expect(Array.from(b.toFloat32Array())).toEqual(Array.from(a.toFloat32Array()));
    expect(relativeError(b, vitIo.tensors.logits)).toBeLessThan(1e-4);
  });
});

describe('damaged npz members are refused by their CRC-32, as NumPy refuses them', () => {
  // Bug caught: a flipped bit in an array's values loaded silently, with other weights than the file's.
  test('one bit flipped in a stored array, and a deflated member whose bytes do not give its CRC', async () => {
    const original = fs.readFileSync(fixture('vit_tiny_test.npz'));
    const members = readZip(original);
    const first = members[0];
    const flipped = Buffer.from(original);
    const at = flipped.indexOf(first.data) + first.data.length - 1; // the last value's lowest byte
    flipped[at] ^= 1;
    const file = path.join(temp.dir, 'vit-flipped.npz');
    fs.writeFileSync(file, flipped);
    const refusal = createModel(vitTiny, { pretrained: file });
    await expect(refusal).rejects.toMatchObject({
      name: 'PaceFileError',
      message: expect.stringContaining(`npz file '${file}': entry '${first.name}': damaged: the zip records CRC-32 `),
    });
    await expect(refusal).rejects.toThrow(/CRC-32 [0-9a-f]{8}, its bytes give [0-9a-f]{8}$/);

    const deflated = numpyZip(members, 'deflate');
    const directory = deflated.readUInt32LE(deflated.length - 22 + 16);
    deflated.writeUInt32LE(deflated.readUInt32LE(directory + 16) ^ 1, directory + 16); // the first member's CRC
    const deflatedFile = path.join(temp.dir, 'vit-deflated-bad-crc.npz');
    fs.writeFileSync(deflatedFile, deflated);
    await expect(createModel(vitTiny, { pretrained: deflatedFile })).rejects.toThrow(/damaged: the zip records CRC-32/);
  });
});

/** A version-1 .npy of little-endian float32, its header padded as numpy pads it (to 64 bytes, ending in \n). */
function npyFloat32(shape: number[], data: Buffer): Buffer {
  const dims = shape.length === 1 ? `(${shape[0]},)` : `(${shape.join(', ')})`;
  let header = `{'descr': '<f4', 'fortran_order': False, 'shape': ${dims}, }`;
  header += ' '.repeat(63 - ((10 + header.length) % 64)) + '\n';
  return npy(header, data);
}
