import os from 'node:os';

import { PaceUnsupportedError } from '../errors';
import { familyOf } from './families';
import type { ModelSpec } from './specs';

/** The number of parameters a spec builds (timm's layouts, closed form), without building it. */
export function parameterCount(spec: ModelSpec): number {
  return familyOf(spec).parameterCount(spec);
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
