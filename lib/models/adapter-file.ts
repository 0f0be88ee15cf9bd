import { PaceFileError } from '../errors';
import { checkedMetadataJson } from '../safetensors';
import {
  ADAPTER_METADATA_KEY,
  SavedAdapterConfigSchema,
  type AdapterConfig,
  type SavedAdapterConfig,
} from './adapters';
import type { ModelSpec } from './specs';

/** What an adapter file is checked against: the model that loads it. */
export interface AdapterTarget {
  spec: ModelSpec;
  name: string;
  adapters: AdapterConfig;
  /** The frozen weights' fingerprint (`Model.weightsFingerprint()`). */
  frozenWeights: string;
  classNames?: readonly string[];
  /** The linears its adapters sit on (read when the recorded targets are spelled otherwise than the model's). */
  adaptedLinears?: () => string[];
}

/** The linears a set of parameter or tensor names adapts: each adapter parameter is `<linear>.delta_<part>`. */
export function adaptedLinearsIn(names: readonly string[]): string[] {
  const linears = new Set<string>();
  for (const name of names) {
    const at = name.indexOf('.delta_');
    if (at > 0) linears.add(name.slice(0, at));
  }
  return [...linears].sort();
}

const notArchitecture = new Set(['family', 'numClasses', 'dropPathRate', 'imgSize']);

/**
 * The spec fields that shape the backbone the adapters act in. Not the class count (the head's shape is checked
 * with the tensors), the stochastic depth (training only) or the image size (adapters carry over to another
 * resolution; a ViT's resampled position embedding then shows in the frozen weights' fingerprint).
 */
export function backboneArchitecture(spec: ModelSpec): Record<string, unknown> {
  return Object.fromEntries(Object.entries(spec).filter(([field]) => !notArchitecture.has(field)));
}

/** The metadata value saveAdapters writes under {@link ADAPTER_METADATA_KEY}. */
export function adapterFileMetadata(model: AdapterTarget): string {
  const saved: SavedAdapterConfig = {
    ...model.adapters,
    family: model.spec.family,
    model: model.name,
    architecture: backboneArchitecture(model.spec),
    imgSize: model.spec.imgSize,
    frozenWeights: model.frozenWeights,
    ...(model.classNames && { classNames: [...model.classNames] }),
  };
  return JSON.stringify(saved);
}

/**
 * Refuses an adapter file whose recorded configuration is unreadable or not the model's: other adapters, another
 * family or architecture, or (unless `allowOtherWeights`) other frozen weights. What the file does not record is
 * not checked. Returns what it records.
 */
export function checkAdapterFile(
  file: string,
  recorded: string,
  model: AdapterTarget,
  options: { allowOtherWeights: boolean; fileTensors?: readonly string[] },
): SavedAdapterConfig {
  const saved = parseRecorded(file, recorded);
  const adapters = model.adapters;
  // The backbone first: another family's file differs in everything else too, and that is the reason to name.
  if (saved.family !== undefined && saved.family !== model.spec.family) {
    throw new PaceFileError(
      `adapter file '${file}' was saved from a ${saved.family} backbone (${saved.model ?? 'unnamed'}); this model is a ${model.spec.family}`,
    );
  }
  // 'linear' (the head alone) and 'full' (everything) have no rank and no targets: those are not compared.
  const ranked = !['linear', 'full'].includes(adapters.type);
  if (saved.type !== adapters.type || (ranked && saved.rank !== adapters.rank)) {
    throw new PaceFileError(
      `adapter file '${file}' holds ${saved.type} adapters of rank ${saved.rank}; this model has ${adapters.type} of rank ${adapters.rank}`,
    );
  }
  const targets = (list: string[] | undefined) => JSON.stringify([...(list ?? [])].sort());
  // Targets spelled otherwise (`attn.qkv` for `qkv`, or a list naming every linear) may select the same linears:
  // those, as the file's tensors and the model's parameters name them, decide.
  const sameLinears = () =>
    options.fileTensors !== undefined &&
    model.adaptedLinears !== undefined &&
    JSON.stringify(adaptedLinearsIn(options.fileTensors)) === JSON.stringify(model.adaptedLinears());
  if (ranked && targets(saved.targets) !== targets(adapters.targets) && !sameLinears()) {
    const described = (list: string[] | undefined) => (list ? list.join(', ') : 'every linear but the head');
    throw new PaceFileError(
      `adapter file '${file}' adapts ${described(saved.targets)}; this model adapts ${described(adapters.targets)}`,
    );
  }
  if (saved.architecture) checkArchitecture(file, saved, model);
  if (saved.frozenWeights !== undefined && !options.allowOtherWeights) {
    const own = model.frozenWeights;
    if (own !== saved.frozenWeights) {
      const resolution =
        saved.imgSize !== undefined && saved.imgSize !== model.spec.imgSize
          ? ` (they were trained at image size ${saved.imgSize}, this model's is ${model.spec.imgSize})`
          : '';
      throw new PaceFileError(
        `adapter file '${file}' was trained on other frozen weights: fingerprint ${saved.frozenWeights}, this model's is ${own}${resolution}; pass { allowOtherWeights: true } (pace: --allow-other-weights) to load them onto these weights`,
      );
    }
  }
  if (saved.classNames && saved.classNames.length !== model.spec.numClasses) {
    throw new PaceFileError(
      `adapter file '${file}' names ${saved.classNames.length} classes; this model's head has ${model.spec.numClasses}`,
    );
  }
  return saved;
}

function parseRecorded(file: string, recorded: string): SavedAdapterConfig {
  const where = `adapter file '${file}'`;
  return checkedMetadataJson(
    recorded,
    SavedAdapterConfigSchema,
    where,
    ADAPTER_METADATA_KEY,
    'an adapter configuration',
  );
}

/** Each field the file records must be the model's (a field this version does not know differs from its absence). */
function checkArchitecture(file: string, saved: SavedAdapterConfig, model: AdapterTarget): void {
  const own = backboneArchitecture(model.spec);
  for (const [field, value] of Object.entries(saved.architecture ?? {})) {
    const text = (v: unknown) => (v === undefined ? 'none' : JSON.stringify(v));
    if (text(value) !== text(own[field])) {
      throw new PaceFileError(
        `adapter file '${file}' was trained on another architecture: its backbone has ${field} ${text(value)}, this model's ${text(own[field])}`,
      );
    }
  }
}
