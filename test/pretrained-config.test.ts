// What a timm config.json may say about preprocessing: a std of zero or below (every normalised pixel infinite or
// of the wrong sign) is refused, naming the model, the file and the channel.
import fs from 'node:fs';
import path from 'node:path';

import { PaceFileError } from '../lib';
import { readPretrainedConfig } from '../lib/hub/pretrained-config';
import { makeTempDir } from './support/paths';

const temp = makeTempDir('pretrained-config');
afterAll(() => temp.cleanup());

function configWith(std: number[]): string {
  const file = path.join(temp.dir, `config-${std.join('_')}.json`);
  const pretrained_cfg = { input_size: [3, 224, 224], crop_pct: 0.9, mean: [0.5, 0.5, 0.5], std };
  fs.writeFileSync(file, JSON.stringify({ architecture: 'vit_base_patch16_224', num_classes: 10, pretrained_cfg }));
  return file;
}

test('a positive std is read as given', () => {
  expect(readPretrainedConfig(configWith([0.25, 0.5, 1]), 'm').preprocessing).toEqual({
    mean: [0.5, 0.5, 0.5],
    std: [0.25, 0.5, 1],
    interpolation: 'bicubic',
    cropPct: 0.9,
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
    `pretrained 'hf-hub:test/zero-std': config.json (${file}) is not a timm config: pretrained_cfg.std.${channel}: must be > 0 (each channel is divided by it)`,
  );
});
