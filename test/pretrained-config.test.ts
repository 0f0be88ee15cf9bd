// What a timm config.json may say about preprocessing: a std of zero or below (every normalised pixel infinite or
// of the wrong sign) is refused, naming the model, the file and the channel; its crop_mode is read.
import fs from 'node:fs';
import path from 'node:path';

import { PaceFileError, PaceUnsupportedError } from '../lib';
import { readPretrainedConfig } from '../lib/hub/pretrained-config';
import { makeTempDir } from './support/paths';

const temp = makeTempDir('pretrained-config');
afterAll(() => temp.cleanup());

function configWith(std: number[], mean = [0.5, 0.5, 0.5]): string {
  const file = path.join(temp.dir, `config-${std.join('_')}-${mean.join('_')}.json`);
  const pretrained_cfg = { input_size: [3, 224, 224], crop_pct: 0.9, mean, std };
  fs.writeFileSync(file, JSON.stringify({ architecture: 'vit_base_patch16_224', num_classes: 10, pretrained_cfg }));
  return file;
}

test('a positive std is read as given', () => {
  expect(readPretrainedConfig(configWith([0.25, 0.5, 1]), 'm').preprocessing).toEqual({
    mean: [0.5, 0.5, 0.5],
    std: [0.25, 0.5, 1],
    interpolation: 'bicubic',
    cropPct: 0.9,
    cropMode: 'center',
    imgSize: 224,
  });
});

test.each([
  [[0.5, 0, 0.5], 1],
  [[0.5, 0.5, -0.2], 2],
])('std %j is refused, naming channel %d', (std, channel) => {
  const file = configWith(std);
  const read = () => readPretrainedConfig(file, 'hf-hub:test/zero-std');
  expect(read).toThrow(PaceFileError);
  expect(read).toThrow(
    `pretrained 'hf-hub:test/zero-std': config.json (${file}) is not a timm config: pretrained_cfg.std.${channel}: must be from 1e-3 to 10 (each pixel, scaled to [0, 1], is divided by it)`,
  );
});

test('a mean and std in 0–255 units are refused when the config is read, naming the field', () => {
  // Bug: accepted at the download (every input then about -500), and refused only by createInferenceServer, as an
  // options.transform the caller never gave.
  const file = configWith([58.395, 57.12, 57.375], [123.675, 116.28, 103.53]);
  expect(() => readPretrainedConfig(file, 'm')).toThrow(
    `pretrained 'm': config.json (${file}) is not a timm config: pretrained_cfg.mean.0: must be from -1 to 2 (pixels are scaled to [0, 1] before the mean is taken off); pretrained_cfg.mean.1:`,
  );
});

test("timm's crop_mode is read: 'squash' kept, absent 'center', another refused naming it", () => {
  // Bug: crop_mode was not read, so weights timm evaluates squashed (its CLIP fine-tunes at 384) were centre-cropped.
  const withCropMode = (cropMode?: string) => {
    const file = path.join(temp.dir, `config-crop-${cropMode}.json`);
    const pretrained_cfg = {
      input_size: [3, 384, 384],
      crop_pct: 0.95,
      mean: [0.5, 0.5, 0.5],
      std: [0.5, 0.5, 0.5],
      ...(cropMode !== undefined && { crop_mode: cropMode }),
    };
    fs.writeFileSync(file, JSON.stringify({ num_classes: 10, pretrained_cfg }));
    return file;
  };
  expect(readPretrainedConfig(withCropMode('squash'), 'm').preprocessing.cropMode).toBe('squash');
  expect(readPretrainedConfig(withCropMode('center'), 'm').preprocessing.cropMode).toBe('center');
  expect(readPretrainedConfig(withCropMode(), 'm').preprocessing.cropMode).toBe('center');
  const border = withCropMode('border');
  expect(() => readPretrainedConfig(border, 'm')).toThrow(PaceUnsupportedError);
  expect(() => readPretrainedConfig(border, 'm')).toThrow(
    "pretrained 'm': config.json asks for crop_mode 'border'; pace-peft crops 'center' or 'squash'",
  );
});

test('label_names as timm may save them: a list, or a map from class index to name; names not one per class left out', () => {
  // Bug: a map (timm's save_config_for_hf writes one for heads with gaps) failed the whole config, so the weights
  // could not be loaded at all.
  const withLabels = (labels: unknown, tag: string) => {
    const file = path.join(temp.dir, `config-labels-${tag}.json`);
    const pretrained_cfg = { input_size: [3, 224, 224], mean: [0.5, 0.5, 0.5], std: [0.5, 0.5, 0.5] };
    fs.writeFileSync(file, JSON.stringify({ num_classes: 3, label_names: labels, pretrained_cfg }));
    return readPretrainedConfig(file, 'm').labelNames;
  };
  expect(withLabels(['cat', 'dog', 'owl'], 'list')).toEqual(['cat', 'dog', 'owl']);
  expect(withLabels({ 2: 'owl', 0: 'cat', 1: 'dog' }, 'map')).toEqual(['cat', 'dog', 'owl']);
  expect(withLabels({ 0: 'cat', 2: 'owl' }, 'gap')).toBeUndefined();
  expect(withLabels({ 0: 'cat', 1: 'dog', 2: 'owl', 3: 'eel' }, 'extra')).toBeUndefined();
  expect(withLabels({ '00': 'cat', 1: 'dog', 2: 'owl' }, 'not-an-index')).toBeUndefined();
  expect(withLabels(['cat', 'dog'], 'short')).toBeUndefined();
});
