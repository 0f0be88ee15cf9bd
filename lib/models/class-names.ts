import { z } from 'zod';

import { PaceFileError, PaceOptionError } from '../errors';
import { metadataJson, type TensorHeaderEntry, type TensorMetadata } from '../safetensors';

/** The metadata key under which saveWeights records the classes' names (a JSON array, one per logit). */
export const CLASS_NAMES_METADATA_KEY = 'pace_peft.class_names';

export const ClassNamesSchema = z.array(z.string());

/** A frozen copy of `names` after checking there is one string per class of the head. */
export function checkClassNames(names: unknown, numClasses: number, what: string): readonly string[] {
  const parsed = ClassNamesSchema.safeParse(names);
  if (!parsed.success) throw new PaceOptionError(`${what}: expected an array of strings (one name per class)`);
  if (numClasses === 0) throw new PaceOptionError(`${what}: the model has no classifier head to name classes of`);
  if (parsed.data.length !== numClasses) {
    throw new PaceOptionError(`${what}: ${parsed.data.length} names for a head of ${numClasses} classes`);
  }
  return Object.freeze([...parsed.data]);
}

/**
 * The class names a weights file records (saveWeights writes them under {@link CLASS_NAMES_METADATA_KEY}), or
 * undefined when it records none. A record that is not one name per class of `numClasses` is refused.
 */
export function recordedClassNames(
  file: string,
  metadata: TensorMetadata | null,
  numClasses: number,
): readonly string[] | undefined {
  const recorded = metadata?.[CLASS_NAMES_METADATA_KEY];
  if (recorded === undefined) return undefined;
  const parsed = metadataJson(recorded, `'${file}'`, CLASS_NAMES_METADATA_KEY);
  try {
    return checkClassNames(parsed, numClasses, `'${file}': its '${CLASS_NAMES_METADATA_KEY}' metadata`);
  } catch (error) {
    throw new PaceFileError((error as Error).message);
  }
}

/** A checkpoint's classifier head weight: timm's `head.weight`, or `head.fc.weight` for Swin ≥ timm 0.9. */
export function headWeightEntry(entries: readonly TensorHeaderEntry[]): TensorHeaderEntry | undefined {
  return entries.find((entry) => entry.name === 'head.weight' || entry.name === 'head.fc.weight');
}
