import fs from 'node:fs';

import { z } from 'zod';

import { EVAL_TRANSFORM_METADATA_KEY, recordedEvalTransform } from '../data/eval-transform';
import { withContext } from '../error-context';
import { PaceBusyError, PaceFileError, PaceNotFoundError, PaceOptionError, PaceStateError } from '../errors';
import { downloadPretrained, DownloadPretrainedOptionsSchema, type PretrainedWeights } from '../hub/download';
import { isPretrainedName } from '../hub/names';
import { nativeAddon, type NativeLoadReport, type NativeModelHandle, type NativeTensorHandle } from '../native';
import { FilePathSchema, parseOptions } from '../options';
import { readTensorHeaderSync, type TensorHeader, type TensorRecord } from '../safetensors';
import { handleOf, Tensor } from '../tensor';
import { FitLock } from './fit-lock';
import { checkModelFitsInMemory } from './size';
import { adaptedLinearsIn, adapterFileMetadata, checkAdapterFile, type AdapterTarget } from './adapter-file';
import { checkClassNames, CLASS_NAMES_METADATA_KEY, headWeightEntry, recordedClassNames } from './class-names';
import {
  ADAPTER_METADATA_KEY,
  foldsIntoWeights,
  MERGED_ADAPTERS_METADATA_KEY,
  AdapterOptionsSchema,
  LoadAdaptersOptionsSchema,
  type AdapterConfig,
  type AdapterOptions,
  type SavedAdapterConfig,
  type LoadAdaptersOptions,
} from './adapters';
import {
  ModelSpecSchema,
  namedPreprocessing,
  preprocessingFor,
  resolveModelName,
  type ModelSpec,
  type ModelSpecInput,
  type Preprocessing,
} from './specs';

/** What a weights load did, by parameter name. */
export type LoadReport = Omit<NativeLoadReport, 'frozenWeights'>;

/** The fingerprint of no frozen parameters (see {@link Model.weightsFingerprint}). */
const NOTHING_FROZEN = 'crc32:00000000';

/** One parameter's name (timm's), shape and dtype. */
export interface ParameterInfo {
  name: string;
  shape: number[];
  dtype: string;
}

const LoadOptionsSchema = z
  .object({
    /** Missing or unexpected tensors are an error (default). The head is always allowed to differ. */
    strict: z.boolean().default(true),
  })
  .strict();

const CreateOptionsSchema = z
  .object({
    numClasses: z.number().int().min(0).optional(),
    imgSize: z.number().int().min(1).optional(),
    /**
     * Weights to load: `true` (the Hub's weights for the model's name, timm's default tag when it has none), a
     * pretrained name (`'vit_base_patch16_224.augreg_in21k'`, `'hf-hub:timm/...'`; downloaded into the shared
     * cache, or found there), or a checkpoint file: timm safetensors or Google's ViT `.npz`.
     */
    pretrained: z.union([z.boolean(), z.string().min(1)]).optional(),
    /** Where and how weights by name are fetched (cache, endpoint, token, offline, revision, progress). */
    hub: DownloadPretrainedOptionsSchema.optional(),
    dropPathRate: z.number().min(0).lt(1).optional(),
    device: z.string().min(1).default('cpu'),
    /** Passed to loadWeights for `pretrained`. */
    strict: z.boolean().default(true),
    /**
     * Makes the random initialisation reproducible: the model's own generator, which its later `addAdapters()` and
     * `resetHead()` draw from too, is seeded with it (whatever else draws from libtorch's global generator).
     */
    seed: z.number().int().min(0).optional(),
  })
  .strict();

/** Options of {@link createModel}. */
export type CreateModelOptions = z.input<typeof CreateOptionsSchema>;

const PathSchema = FilePathSchema;

const ForwardOptionsSchema = z
  .object({
    /** The arithmetic of the products: `fp32` (default), `tf32` (CUDA's matrix units) or `bf16` (autocast). */
    precision: z.enum(['fp32', 'tf32', 'bf16']).default('fp32'),
  })
  .strict();

/** Options of {@link Model.forward} and {@link Model.forwardFeatures}. */
export type ForwardOptions = z.input<typeof ForwardOptionsSchema>;

/**
 * A ViT or Swin backbone held by libtorch, with timm's parameter names. Forward passes run off the JavaScript
 * thread. Created by {@link createModel}; starts in evaluation mode.
 */
export class Model implements Disposable {
  #native: NativeModelHandle;
  /** @internal Held by Trainer.fit while it trains this model. */
  readonly fitLock = new FitLock();
  /** The resolved configuration. */
  readonly spec: ModelSpec;
  /** The timm name it was created from, or the family for a custom spec. */
  readonly name: string;
  /** Mean, std, interpolation and crop the pretrained weights expect. */
  readonly preprocessing: Preprocessing;
  /** The report of the `pretrained` load, when there was one. */
  loadReport?: LoadReport;
  /** Where weights loaded by name came from (repository, commit, file, labels), when they were. */
  pretrainedFrom?: PretrainedWeights;
  /** The adapters added by {@link Model.addAdapters}, if any. */
  adapters?: AdapterConfig;
  /** See #frozenWeights. */
  #frozenFingerprint?: string | Promise<string | undefined>;
  #classNames?: readonly string[];
  /** The type of the adapters folded into the weights (by merged(), or in a file loaded), which saveWeights records. */
  #foldedAdapters?: string;
  #disposed = false;

  /** Not for users: models are made by {@link createModel} (and {@link Model.merged}). */
  constructor(handle: NativeModelHandle, spec: ModelSpec, name: string, preprocessing?: Preprocessing) {
    if (typeof handle !== 'object' || handle === null || typeof spec !== 'object' || spec === null) {
      throw new PaceOptionError('new Model(): models are made by createModel()');
    }
    this.#native = handle;
    this.spec = spec;
    this.name = name;
    this.preprocessing = preprocessing ?? preprocessingFor(spec);
  }

  /**
   * Loads a checkpoint: timm safetensors (old Swin layouts and buffers accepted) or Google's ViT `.npz`.
   * Position embeddings are resampled when the image size differs; a head of another class count is
   * re-initialised. Shape mismatches, and with `strict` missing or extra tensors, are errors that leave the
   * model unchanged. PyTorch pickles and torch.save archives are refused, recognised by their bytes.
   */
  async loadWeights(path: string, options: z.input<typeof LoadOptionsSchema> = {}): Promise<LoadReport> {
    const { strict } = parseOptions(LoadOptionsSchema, options, 'options');
    const native = this.#use('loadWeights');
    const file = parseOptions(PathSchema, path, 'path');
    // Read and checked on this thread, so that the load is queued now, before any call made after this one.
    const header = safetensorsHeaderOf(file);
    if (strict && header?.metadata?.[ADAPTER_METADATA_KEY] !== undefined) {
      throw new PaceFileError(
        `'${file}' is an adapter file (saveAdapters), not backbone weights: load it with addAdapters() and ` +
          'loadAdapters(), or fold it into the backbone first (merged() and saveWeights(); pace export --merged)',
      );
    }
    const merged = header?.metadata?.[MERGED_ADAPTERS_METADATA_KEY];
    if (foldsIntoWeights(merged) && foldsIntoWeights(this.adapters?.type)) {
      throw new PaceFileError(
        `'${file}' holds weights with ${merged} adapters folded in (saveWeights of a model with adapters): under ` +
          "this model's adapters they would apply twice. Load it into a model without adapters (then add new ones), " +
          'or load the adapters themselves with loadAdapters()',
      );
    }
    // The head's names as the load leaves them, set now (a save asked after this load writes them): the file's when
    // its head is of this model's class count, none when the head is re-initialised (or from an .npz, which names
    // none). A load that fails gives the old ones back.
    const classNames = header && this.#namesOfLoadedHead(file, header);
    // Set now, as the names are (a save asked after this load records it); a failed load gives the old one back.
    const foldedBefore = this.#foldedAdapters;
    const folded = merged ?? (strict ? undefined : foldedBefore);
    this.#foldedAdapters = folded;
    const loading = native.loadWeights(file, strict, header ? (header.metadata ?? {}) : undefined);
    loading.catch(() => {
      if (this.#foldedAdapters === folded) this.#foldedAdapters = foldedBefore;
    });
    const loaded = this.#namesAfter(loading, classNames);
    // The load reads the fingerprint it leaves; one that fails leaves the weights, and the fingerprint, as they were.
    const before = this.#frozenFingerprint;
    const fingerprint = loading.then(
      (loaded) => loaded.frozenWeights,
      () => before,
    );
    this.#frozenFingerprint = fingerprint;
    // Settled, it is a plain value again: adapter loads and saves asked later are then queued at once.
    void fingerprint.then((value) => {
      if (this.#frozenFingerprint === fingerprint) this.#frozenFingerprint = value;
    });
    const report: LoadReport & { frozenWeights?: string } = { ...(await loaded) };
    delete report.frozenWeights;
    return report;
  }

  /**
   * The classes' names, one per logit, when they are known: those a loaded weights file records (saveWeights
   * writes them), the Hub config's label names for the head it came with, or an adapter file's (saveAdapters
   * records them). Set them for a new head (`pace fit` sets an image folder's class names); a head re-initialised
   * by a load or `resetHead()` has none. `pace serve` and the inference server answer with them.
   */
  get classNames(): readonly string[] | undefined {
    return this.#classNames;
  }

  set classNames(names: readonly string[] | undefined) {
    this.#classNames = names === undefined ? undefined : checkClassNames(names, this.spec.numClasses, 'classNames');
  }

  /**
   * Writes the backbone as a timm-loadable safetensors file (atomically), adapters folded in (recorded, so that
   * the file is refused by a model that has adapters, which would apply them twice). `metadata` joins the
   * file's; of pace-peft's own keys it may hold an evaluation transform (`EVAL_TRANSFORM_METADATA_KEY`, checked).
   */
  async saveWeights(path: string, options: { metadata?: Record<string, string> } = {}): Promise<void> {
    parseOptions(z.record(z.string(), z.string()).optional(), options.metadata, 'options.metadata');
    // The caller's object, checked (zod's copy assigns each key, and an assigned "__proto__" keeps nothing)
    const given = options.metadata;
    checkOwnMetadata(given);
    const names = this.#classNames && { [CLASS_NAMES_METADATA_KEY]: JSON.stringify(this.#classNames) };
    const foldedType = this.#foldedType;
    const folded = foldedType !== undefined && { [MERGED_ADAPTERS_METADATA_KEY]: foldedType };
    const metadata = names || folded || given ? { ...names, ...folded, ...given } : null;
    await this.#use('saveWeights').saveWeights(parseOptions(PathSchema, path, 'path'), metadata);
  }

  /**
   * Logits `[batch, numClasses]` (or pooled features without a head) for images `[batch, 3, S, S]`, float32.
   * `precision: 'bf16'` runs the products in bfloat16 (autocast, as PyTorch's), on CUDA or on a CPU with bf16
   * units (see `doctor().cpuBf16`), where it is about twice as fast.
   */
  async forward(images: Tensor, options: ForwardOptions = {}): Promise<Tensor> {
    const { precision } = parseOptions(ForwardOptionsSchema, options, 'options');
    return new Tensor(await this.#use('forward').forward(handleOf(images), precision));
  }

  /** The final norm's output: ViT `[batch, tokens, dim]`, Swin `[batch, H, W, channels]`, float32. */
  async forwardFeatures(images: Tensor, options: ForwardOptions = {}): Promise<Tensor> {
    const { precision } = parseOptions(ForwardOptionsSchema, options, 'options');
    return new Tensor(await this.#use('forwardFeatures').forwardFeatures(handleOf(images), precision));
  }

  /** Training mode (stochastic depth active) or, with `false`, evaluation mode. */
  train(mode = true): this {
    this.#use('train').setTraining(mode);
    return this;
  }

  /** Evaluation mode. */
  eval(): this {
    return this.train(false);
  }

  get training(): boolean {
    return this.#native.training;
  }

  /** Every parameter's name, shape and dtype, in timm's state-dict order. */
  parameters(): ParameterInfo[] {
    const native = this.#use('parameters');
    try {
      return native.parameters();
    } catch (error) {
      // From a fit's onBatchEnd the epoch is running on the training thread and holds the parameters.
      if (error instanceof PaceBusyError && this.fitLock.held) {
        throw new PaceBusyError('model.parameters: not while an epoch trains the model; read it in onEpochEnd');
      }
      throw error;
    }
  }

  /** The number of scalar parameters. */
  numParameters(): number {
    return this.parameters().reduce((total, p) => total + p.shape.reduce((n, d) => n * d, 1), 0);
  }

  /** Moves the parameters to a device (`'cpu'`, `'cuda'`, `'cuda:1'`). */
  to(device: string): this {
    this.#use('to').to(device);
    return this;
  }

  get device(): string {
    return this.#native.device;
  }

  /**
   * Adds adapters (on every Linear but the head, or on `targets`) and freezes everything but them and the
   * head; `linear` trains only the head, `full` everything. Names follow the PACE reference
   * (`blocks.1.mlp.fc1.delta_W_down`, ...). Returns the trainable parameters' names.
   */
  addAdapters(options: AdapterOptions = {}): string[] {
    const native = this.#live('addAdapters');
    if (this.adapters) throw new PaceStateError(`the model already has ${this.adapters.type} adapters`);
    const config = parseOptions(AdapterOptionsSchema, options, 'options');
    const trainable = native.addAdapters(config.type, config.rank, config.targets ?? []);
    this.adapters = config;
    this.#frozenFingerprint = native.weightsFingerprint(); // the model is idle now: see #frozenWeights
    return trainable;
  }

  /**
   * Re-initialises the classifier head as timm does for a new task (its `reset_classifier`: a new `nn.Linear`, weight
   * and bias uniform in ±1/√width); its class names go.
   */
  resetHead(): this {
    this.#use('resetHead').resetHead();
    this.#classNames = undefined;
    return this;
  }

  /**
   * A fingerprint of the frozen weights (`crc32:` and eight hex digits, over each frozen parameter's name, shape
   * and first and last 4,096 values): what tells one backbone's weights from another's. A resumed fit requires it.
   * Only frozen parameters count, so before `addAdapters` (every parameter trains) and with type `'full'` it is
   * `crc32:00000000` whatever the weights.
   */
  weightsFingerprint(): string {
    return this.#use('weightsFingerprint').weightsFingerprint();
  }

  /**
   * @internal The frozen weights' fingerprint as the calls queued so far leave them, for a fit to record: read
   * without the model being idle, as a fit queues behind a forward or save asked before it.
   */
  async queuedWeightsFingerprint(): Promise<string> {
    const native = this.#use('fit');
    // Without adapters every parameter trains: nothing frozen to read.
    if (!this.adapters && this.#frozenFingerprint === undefined) return NOTHING_FROZEN;
    return this.#frozenWeights(native);
  }

  /** Names of the parameters that train (adapters and head after addAdapters). */
  trainableParameters(): string[] {
    return this.#use('trainableParameters').trainableParameters();
  }

  /**
   * Loads trainable parameters (adapters + head) saved by {@link Model.saveAdapters}, or the PACE reference's
   * adapter files. A file made for another backbone, type or rank is refused, naming the tensor and shapes; one
   * saved by {@link Model.saveAdapters} also for another architecture (naming the field), or for other frozen
   * weights (naming both fingerprints) unless `allowOtherWeights`.
   */
  async loadAdapters(path: string, options: LoadAdaptersOptions = {}): Promise<void> {
    const file = parseOptions(PathSchema, path, 'path');
    const { allowOtherWeights } = parseOptions(LoadAdaptersOptionsSchema, options, 'options');
    const native = this.#live('loadAdapters');
    if (!this.adapters) throw new PaceStateError('call addAdapters() before loadAdapters()');
    // Read and checked on this thread, so that the load is queued now, before any call made after this one.
    const { metadata, entries } = readTensorHeaderSync(file);
    if (metadata?.[nativeAddon().checkpointDigestKey] !== undefined) {
      throw new PaceFileError(
        `'${file}' is a training checkpoint (the trainer's whole state, as fit writes last.safetensors and ` +
          "best.safetensors), not an adapter file: load the run's adapters.safetensors, or resume the run from it",
      );
    }
    const recorded = metadata?.[ADAPTER_METADATA_KEY];
    // The head comes from the file: so do its names, when it records them.
    const load = (saved?: SavedAdapterConfig) =>
      this.#namesAfter(native.loadAdapters(file, metadata ?? {}), saved?.classNames && Object.freeze(saved.classNames));
    // The reference's files carry no metadata: those are checked by their tensors' names and shapes alone.
    if (recorded === undefined) return load();
    await this.#withAdapterTarget(native, (target) =>
      load(checkAdapterFile(file, recorded, target, { allowOtherWeights, fileTensors: entries.map((e) => e.name) })),
    );
  }

  /**
   * Saves the trainable parameters, with the adapter configuration, the backbone's architecture, the frozen
   * weights' fingerprint and the class names (when known) in the file's metadata.
   */
  async saveAdapters(path: string): Promise<void> {
    const native = this.#live('saveAdapters');
    if (!this.adapters) throw new PaceStateError('the model has no adapters to save: call addAdapters() first');
    const file = parseOptions(PathSchema, path, 'path');
    await this.#withAdapterTarget(native, (target) =>
      native.saveAdapters(file, { [ADAPTER_METADATA_KEY]: adapterFileMetadata(target) }),
    );
  }

  /** The names of the head a load of this file leaves: the file's when its head has this model's class count. */
  #namesOfLoadedHead(file: string, header: TensorHeader): readonly string[] | undefined {
    const head = headWeightEntry(header.entries);
    if (!head || head.shape[0] !== this.spec.numClasses) return undefined;
    return recordedClassNames(file, header.metadata, head.shape[0]);
  }

  /**
   * Sets the names of the head a queued load leaves now (a save asked after the load writes them), and gives the old
   * ones back if the load fails.
   */
  async #namesAfter<T>(loading: Promise<T>, names: readonly string[] | undefined): Promise<T> {
    const before = this.#classNames;
    this.#classNames = names;
    try {
      return await loading;
    } catch (error) {
      if (this.#classNames === names) this.#classNames = before;
      throw error;
    }
  }

  /**
   * Runs `body` (which queues a save or load of adapters) with what an adapter file is checked against and records:
   * at once when the frozen weights' fingerprint is known, so that the job is queued before any call made after
   * this one; only while a loadWeights is in flight after that load.
   */
  #withAdapterTarget<T>(native: NativeModelHandle, body: (target: AdapterTarget) => Promise<T>): Promise<T> {
    const frozen = this.#frozenWeights(native);
    const target = (frozenWeights: string): AdapterTarget => ({
      spec: this.spec,
      name: this.name,
      adapters: this.adapters!,
      frozenWeights,
      classNames: this.#classNames,
      adaptedLinears: () => adaptedLinearsIn(native.trainableParameters()),
    });
    return typeof frozen === 'string' ? body(target(frozen)) : frozen.then((value) => body(target(value)));
  }

  /**
   * The frozen weights' fingerprint as the jobs queued so far leave them. Reading it natively needs an idle model,
   * so it is kept: only addAdapters (which runs when idle) and loadWeights (whose job reads it) change it, training
   * does not, and a save or load queued behind a forward must not be refused as busy.
   */
  #frozenWeights(native: NativeModelHandle): string | Promise<string> {
    const known = this.#frozenFingerprint;
    if (typeof known === 'string') return known;
    if (known !== undefined) return known.then((value) => value ?? this.#readFingerprint(native));
    return this.#readFingerprint(native);
  }

  #readFingerprint(native: NativeModelHandle): string {
    const read = native.weightsFingerprint();
    this.#frozenFingerprint = read;
    return read;
  }

  /** The trainable parameters' gradients from the last training step, by name (copies). */
  gradients(): TensorRecord {
    return tensorRecord(this.#use('gradients').gradients());
  }

  /**
   * Every parameter's value by name, in timm's state-dict order (`blocks.0.attn.qkv.weight`, …), adapters under
   * the reference's names (`….delta_W_down`). Copies: they stay as they are while the model trains on, and
   * each should be disposed (or left to the garbage collector) when read.
   */
  stateDict(): TensorRecord {
    return tensorRecord(this.#use('stateDict').stateDict());
  }

  /**
   * A plain backbone of the same configuration with the adapters folded into its weights and biases: the
   * same eval-mode outputs at the backbone's own cost. `saveWeights` on it gives a timm-loadable file; for a Swin
   * with VPT adapters, one whose `downsample.reduction` biases timm's Swin must be given first (README).
   */
  async merged(): Promise<Model> {
    const copy = new Model(await this.#use('merged').merged(), this.spec, this.name, this.preprocessing);
    copy.#classNames = this.#classNames;
    copy.#foldedAdapters = this.#foldedType;
    return copy;
  }

  /** The native model, after checking that no fit (other than the caller's own) is training it. */
  #use(operation: string): NativeModelHandle {
    this.fitLock.check(`model.${operation}`);
    return this.#native;
  }

  /** As #use, and not disposed: for checks of this object's own state that would otherwise speak first. */
  #live(operation: string): NativeModelHandle {
    const native = this.#use(operation);
    if (this.#disposed) throw new PaceStateError('Model was disposed; it cannot be used any more');
    return native;
  }

  /** @internal The native handle, for the trainer. */
  get nativeHandle(): NativeModelHandle {
    return this.#use('nativeHandle');
  }

  /** The type of the adapters folded into what saveWeights writes: this model's own, else those its weights hold. */
  get #foldedType(): string | undefined {
    return foldsIntoWeights(this.adapters?.type) ? this.adapters?.type : this.#foldedAdapters;
  }

  /** Whether {@link dispose} was called: the model cannot be used any more. */
  get disposed(): boolean {
    return this.#disposed;
  }

  /** Frees the parameters (after any forward still running). */
  dispose(): void {
    this.#use('dispose').dispose();
    this.#disposed = true;
  }

  [Symbol.dispose](): void {
    this.dispose();
  }
}

/**
 * Creates a backbone from a timm name (`'vit_base_patch16_224'`, `'swin_base_patch4_window7_224'`, tags
 * such as `.augreg2_in21k_ft_in1k` accepted) or a spec, optionally loading `pretrained` weights. Weights by name
 * (`pretrained: true` or a pretrained name) bring their head's class count (unless `numClasses` or the spec gives
 * one) and their preprocessing (mean, std, interpolation, crop) from the repository's `config.json`.
 */
export async function createModel(
  nameOrSpec: string | ModelSpecInput,
  options: CreateModelOptions = {},
): Promise<Model> {
  const { numClasses, imgSize, pretrained, hub, dropPathRate, device, strict, seed } = parseOptions(
    CreateOptionsSchema,
    options,
    'options',
  );
  let base: ModelSpecInput;
  let name: string;
  if (typeof nameOrSpec === 'string') {
    const resolved = resolveModelName(nameOrSpec);
    if (!resolved) throw new PaceNotFoundError(`unknown model '${nameOrSpec}'; listModels() names the known ones`);
    base = resolved;
    name = nameOrSpec;
  } else if (typeof nameOrSpec === 'object' && nameOrSpec !== null) {
    base = nameOrSpec;
    name = nameOrSpec.family;
  } else {
    throw new PaceOptionError(
      `expected a model name or a spec object, got ${nameOrSpec === null ? 'null' : typeof nameOrSpec}`,
    );
  }
  const overrides = Object.fromEntries(
    Object.entries({ numClasses, imgSize, dropPathRate }).filter(([, value]) => value !== undefined),
  );
  let spec = parseOptions(ModelSpecSchema, { ...base, ...overrides }, 'spec');
  checkModelFitsInMemory(spec);
  let fromHub: PretrainedWeights | undefined;
  if (pretrained === true || (typeof pretrained === 'string' && isPretrainedName(pretrained))) {
    if (pretrained === true && typeof nameOrSpec !== 'string') {
      throw new PaceOptionError(
        "options.pretrained: true needs a model name; with a spec, name the weights ('hf-hub:org/name') or give a file",
      );
    }
    // Read before the download: the caller's spec object may change while it runs.
    const classesGiven =
      numClasses !== undefined || (typeof nameOrSpec !== 'string' && nameOrSpec.numClasses !== undefined);
    fromHub = await downloadPretrained(pretrained === true ? (nameOrSpec as string) : pretrained, hub);
    if (!classesGiven) spec = parseOptions(ModelSpecSchema, { ...spec, numClasses: fromHub.numClasses }, 'spec');
    checkModelFitsInMemory(spec);
  }
  // The Hub config's, else timm's for the name's tag (weights from a file), else the family's (a spec).
  const preprocessing = fromHub
    ? { ...fromHub.preprocessing, imgSize: spec.imgSize }
    : typeof nameOrSpec === 'string'
      ? namedPreprocessing(nameOrSpec, spec)
      : undefined;
  const model = new Model(await nativeAddon().createModel(spec, seed), spec, name, preprocessing);
  try {
    if (device !== 'cpu') model.to(device);
    model.eval();
    const weights = fromHub ? fromHub.file : typeof pretrained === 'string' ? pretrained : undefined;
    if (weights) model.loadReport = await loadPretrained(model, weights, fromHub, strict);
    model.pretrainedFrom = fromHub;
    // The Hub config's label names are the head's when the head came with the weights.
    if (fromHub?.labelNames && model.loadReport?.loaded.some(isHeadParameter)) {
      model.classNames = fromHub.labelNames;
    }
  } catch (error) {
    model.dispose();
    throw error;
  }
  return model;
}

/**
 * Loads the weights of `createModel`'s `pretrained`. A cached Hub file that does not load (damaged on disk: the
 * cache trusts what it verified when it downloaded) is named with its blob, which deleting fetches it again.
 */
async function loadPretrained(
  model: Model,
  weights: string,
  fromHub: PretrainedWeights | undefined,
  strict: boolean | undefined,
): Promise<LoadReport> {
  try {
    return await model.loadWeights(weights, { strict });
  } catch (error) {
    if (!fromHub || !(error instanceof PaceFileError)) throw error;
    let blob = weights;
    try {
      blob = fs.realpathSync(weights);
    } catch {
      // a dangling link: the snapshot path is all there is to name
    }
    throw withContext(
      error,
      `${error.message}. These are ${fromHub.repo}'s weights from the Hugging Face cache: delete ${blob}${blob === weights ? '' : ` and ${weights}`} to download them again`,
    );
  }
}

function isHeadParameter(name: string): boolean {
  return name.startsWith('head.');
}

/**
 * A user's metadata for saveWeights: pace-peft's own keys would be read back as what the library wrote (a file it
 * then refuses, or a server transform it then applies), so they are refused but for a checked evaluation transform.
 */
function checkOwnMetadata(given: Record<string, string> | undefined): void {
  for (const key of Object.keys(given ?? {})) {
    if (!key.startsWith('pace_peft.')) continue;
    if (key === EVAL_TRANSFORM_METADATA_KEY) {
      try {
        recordedEvalTransform('options.metadata', given!);
      } catch (error) {
        throw new PaceOptionError((error as Error).message.replace(/^'options\.metadata': its /, 'options.metadata: '));
      }
      continue;
    }
    const instead = key === CLASS_NAMES_METADATA_KEY ? ': set model.classNames, which saveWeights records' : '';
    throw new PaceOptionError(`options.metadata: '${key}' is one of pace-peft's own keys${instead}`);
  }
}

/**
 * A weights file's safetensors header, read before the load so that what its metadata says is checked before
 * anything changes. None for Google's .npz files, and none for a file whose header is unreadable: the load names
 * that.
 */
function safetensorsHeaderOf(file: string): TensorHeader | undefined {
  if (file.toLowerCase().endsWith('.npz')) return undefined;
  try {
    return readTensorHeaderSync(file);
  } catch {
    return undefined;
  }
}

function tensorRecord({ names, tensors }: { names: string[]; tensors: NativeTensorHandle[] }): TensorRecord {
  const record: TensorRecord = Object.create(null) as TensorRecord;
  names.forEach((name, i) => {
    record[name] = new Tensor(tensors[i]);
  });
  return record;
}
