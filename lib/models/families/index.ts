import { z } from 'zod';

import { PaceOptionError } from '../../errors';
import type { BackboneFamily } from './family';
import { swinFamily, SwinSpecSchema } from './swin';
import { vitFamily, VitSpecSchema } from './vit';

/** The backbone families by name: a new family is its own file here plus one entry in each list below. */
export const families: readonly BackboneFamily[] = [vitFamily, swinFamily];

/** A backbone configuration, one of the families' specs (chosen by its `family` field). */
export const ModelSpecSchema = z.discriminatedUnion('family', [VitSpecSchema, SwinSpecSchema]);

/** The family a spec belongs to. */
export function familyOf(spec: { family: string }): BackboneFamily {
  const family = families.find((candidate) => candidate.name === spec.family);
  if (!family) throw new PaceOptionError(`spec.family: no backbone family '${spec.family}'`);
  return family;
}
