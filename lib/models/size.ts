import os from 'node:os';

import { PaceUnsupportedError } from '../errors';
import type { ModelSpec, SwinSpec, VitSpec } from './specs';

function vitParameters(s: VitSpec): number {
  const d = s.embedDim;
  const hidden = Math.floor(d * s.mlpRatio);
  const grid = Math.floor(s.imgSize / s.patchSize);
  const block = 4 * d + (3 * d * d + 3 * d) + (d * d + d) + (d * hidden + hidden) + (hidden * d + d);
  const head = s.numClasses > 0 ? s.numClasses * d + s.numClasses : 0;
  return 3 * s.patchSize ** 2 * d + d + d + (grid * grid + 1) * d + s.depth * block + 2 * d + head;
}

function swinParameters(s: SwinSpec): number {
  let total = 3 * s.patchSize ** 2 * s.embedDim + 3 * s.embedDim; // projection, its bias and norm
  let dim = s.embedDim;
  s.depths.forEach((depth, stage) => {
    if (stage > 0) {
      total += 2 * (4 * dim) + 4 * dim * (2 * dim); // patch merging: norm over 4·dim, reduction to 2·dim, no bias
      dim *= 2;
    }
    const hidden = Math.floor(dim * s.mlpRatio);
    const table = (2 * s.windowSize - 1) ** 2 * (s.numHeads[stage] ?? 1);
    total +=
      depth * (4 * dim + (3 * dim * dim + 3 * dim) + (dim * dim + dim) + table + 2 * dim * hidden + hidden + dim);
  });
  return total + 2 * dim + (s.numClasses > 0 ? s.numClasses * dim + s.numClasses : 0);
}

/** The number of parameters a spec builds (timm's layouts, closed form), without building it. */
export function parameterCount(spec: ModelSpec): number {
  return spec.family === 'vit' ? vitParameters(spec) : swinParameters(spec);
}

/**
 * Refuses a spec whose float32 parameters alone would not fit in this machine's memory, before any native
 * allocation (which would otherwise hold the JavaScript thread until the allocator gives up).
 */
export function checkModelFitsInMemory(spec: ModelSpec, memory = os.totalmem()): void {
  const count = parameterCount(spec);
  const bytes = count * 4;
  if (bytes > memory) {
    const gib = (n: number) => `${(n / 2 ** 30).toFixed(1)} GiB`;
    throw new PaceUnsupportedError(
      `spec: this ${spec.family} has ${count.toExponential(2)} parameters, ${gib(bytes)} in float32, more than this machine's ${gib(memory)} of memory`,
    );
  }
}
