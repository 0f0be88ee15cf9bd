import fs from 'node:fs';
import path from 'node:path';

import type { DType, TypedArray } from './dtype';
import { paceError, PaceUnsupportedError } from './errors';
import { locateAddon, packageRoot, type AddonLocation } from './install/addon-location';
import { sameFolder } from './install/binaries';
import { libtorchOnLoaderPath, withLoadEnvironment } from './install/load-environment';
import type { StepGraphMode } from './train/step-graphs';

// The native addon's surface, described on its own: nothing here imports the layers built on it.

/** The native handle behind a {@link Tensor}; not part of the public API. */
export interface NativeTensorHandle {
  readonly shape: number[];
  readonly dtype: DType;
  readonly device: string;
  readonly numel: number;
  readonly byteLength: number;
  readonly disposed: boolean;
  /** Writes the elements, converted to `dtype`, into `into` (of exactly their size). */
  copyInto(dtype: DType, into: TypedArray): void;
  viewData(): ArrayBuffer | undefined;
  /** A cheap identity of the contents (native/core/tensor/fingerprint.h). */
  fingerprint(whole?: boolean): string;
  to(device: string): NativeTensorHandle;
  cast(dtype: DType): NativeTensorHandle;
  clone(): NativeTensorHandle;
  dispose(): void;
}

export interface NativeSafetensorsEntry {
  name: string;
  dtype: DType;
  shape: number[];
  dataOffsets: [number, number];
}

export interface NativeDoctorReport {
  torchVersion: string;
  cuda: { built: boolean; deviceCount: number };
  blas: { kind: string; library: string; detail: string; threading: string; onednn: string };
  threads: { intraOp: number; interOp: number; hardware: number; available: number; coreLoops: number };
  parallelInfo: string;
  cpuAttentionKernels: boolean;
  cpuBf16: { units: boolean; amx: boolean; gemm: 'onednn' | 'aten'; reason: string; sumsInFloat: boolean };
  buildConfig: string;
  warnings: string[];
}

export interface NativeGemmMeasurement {
  size: number;
  iterations: number;
  seconds: number;
  gflops: number;
  device: string;
  dtype: 'float32' | 'bfloat16';
  threads: number;
}

/** What loadWeights did, by parameter name (public as LoadReport). */
export interface NativeLoadReport {
  /** Model parameters set from the checkpoint. */
  loaded: string[];
  /** Model parameters the checkpoint lacks (only with `strict: false`; kept as initialised). */
  missing: string[];
  /** Checkpoint tensors the model has no place for (only with `strict: false`). */
  unexpected: string[];
  /** Loaded after resampling: a position embedding, patch embedding or Swin relative-position table of another geometry. */
  resized: string[];
  /** Head parameters re-initialised because the checkpoint's class count differs (or it has no head). */
  reinitialized: string[];
  /** Checkpoint tensors dropped on purpose, as timm does (`pre_logits`, Swin's recomputed buffers). */
  ignored: string[];
  /** @internal The frozen weights' fingerprint after the load (see weightsFingerprint); not in the public report. */
  frozenWeights: string;
}

/** One training step's results (public as StepResult). */
export interface NativeStepResult {
  clsLoss: number;
  paceLoss: number;
  totalLoss: number;
  /** Top-1 hits among the samples the cross-entropy saw (data-parallel: this rank's share; sum over the ranks). */
  correct: number;
  /** How many samples that was (half the batch on a lazy consistency step; data-parallel: this rank's share). */
  counted: number;
  /** With `diagnostics`: the trainable parameters' gradient L2 norm. */
  gradNorm?: number;
  /**
   * With `diagnostics`: mean_batch Σ_classes (f − f₀)² against the frozen backbone (same head), before the update
   * (data-parallel: over this rank's share).
   */
  fpDistance?: number;
  /** With `stepGraphs`: how the step ran (`captured`, `replayed`, `warmup`, or `eager: <why>`). */
  graph?: string;
}

export interface NativeSafetensorsHeader {
  entries: NativeSafetensorsEntry[];
  metadata: Record<string, string> | null;
  dataStart: number;
  fileSize: number;
}

export interface NativeModelHandle {
  /** `checkedMetadata`: a safetensors file's metadata as read before (a file that changed since is refused). */
  loadWeights(path: string, strict: boolean, checkedMetadata?: Record<string, string>): Promise<NativeLoadReport>;
  saveWeights(path: string, metadata: Record<string, string> | null): Promise<void>;
  forward(images: NativeTensorHandle, precision?: 'fp32' | 'tf32' | 'bf16'): Promise<NativeTensorHandle>;
  forwardFeatures(images: NativeTensorHandle, precision?: 'fp32' | 'tf32' | 'bf16'): Promise<NativeTensorHandle>;
  setTraining(mode: boolean): void;
  readonly training: boolean;
  parameters(): { name: string; shape: number[]; dtype: string }[];
  stateDict(): { names: string[]; tensors: NativeTensorHandle[] };
  to(device: string): void;
  readonly device: string;
  dispose(): void;
  addAdapters(type: string, rank: number, targets: string[]): string[];
  /** `checkedMetadata`: the file's metadata as read before (a file that changed since is refused). */
  loadAdapters(path: string, checkedMetadata: Record<string, string>): Promise<void>;
  saveAdapters(path: string, metadata: Record<string, string>): Promise<void>;
  trainableParameters(): string[];
  weightsFingerprint(): string;
  merged(): Promise<NativeModelHandle>;
  gradients(): { names: string[]; tensors: NativeTensorHandle[] };
  resetHead(): void;
  evaluate(
    images: NativeTensorHandle,
    labels: NativeTensorHandle,
    options: {
      batchSize: number;
      normalization?: { mean: number[]; std: number[] };
      /** Images of their own sizes: packed pixels [P, C] with these extents [N, 2]; each evaluated on its centre. */
      extents?: NativeTensorHandle;
      /** Only these classes take part in the argmax, top-5 and softmax. */
      classes?: number[];
      precision?: 'fp32' | 'tf32' | 'bf16';
      /** Every rank of the current distributed group evaluates its share (collective). */
      sharded?: boolean;
      /** Stops the evaluation before its next batch once set (not read when sharded). */
      stop?: NativeStopFlag;
    },
  ): Promise<
    | {
        stopped?: undefined;
        samples: number;
        classes: number;
        top1: number;
        top5?: number;
        loss: number;
        confusion: NativeTensorHandle;
      }
    | { stopped: true }
  >;
}

/** A flag JavaScript sets and a native call reads between its batches from its worker thread. */
export interface NativeStopFlag {
  stop(): void;
  readonly stopped: boolean;
}

/**
 * A CPU tensor filled one row at a time (a dataset decoded in parallel), so that its rows never all live in
 * JavaScript buffers as well; `finish` moves the kept rows down in place and hands over their tensor.
 */
export interface NativeRowsWriter {
  put(row: number, data: ArrayBufferView): void;
  finish(keptRows: number[]): NativeTensorHandle;
  dispose(): void;
}

export interface NativeEpochResult {
  steps: number;
  samples: number;
  clsLoss: number;
  paceLoss: number;
  totalLoss: number;
  trainAccuracy: number;
  seconds: number;
  /** Data-parallel: seconds spent in the gradient all-reduces. */
  communicationSeconds: number;
  aborted: boolean;
  gradNorm?: number;
  fpDistance?: number;
  /** The learning rate of the epoch's first step, when a schedule was given. */
  learningRate?: number;
  /** Each step's total loss in order: all the progress `onBatch` reported, including calls still on their way. */
  stepLosses: Float64Array;
  /** The learning rate each of those steps ran at. */
  stepRates: Float64Array;
  stepGraphs: StepGraphCounts;
}

/** The CUDA caching allocator's counters for one device. */
export interface CudaMemoryStats {
  /** Bytes in tensors now (torch.cuda.memory_allocated). */
  allocatedBytes: number;
  /** The most ever at once, since the process started or the last reset (torch.cuda.max_memory_allocated). */
  peakAllocatedBytes: number;
  /** Bytes the allocator holds from the driver, in use or cached (torch.cuda.memory_reserved). */
  reservedBytes: number;
}

/** How an epoch's steps ran with respect to whole-step CUDA graphs. */
export interface StepGraphCounts {
  /** Steps run eagerly on the capturing thread, then captured into a graph (replayed from the next step on). */
  captured: number;
  /** Steps replayed from an earlier capture. */
  replayed: number;
  /** Eager steps through a graph's buffers before its capture. */
  warmups: number;
  /** Steps that could not use a graph. */
  eager: number;
  /** Why they could not (the first reason met). */
  eagerReason?: string;
}

/** The optimizer settings of a native trainer (AdamW's, and SAM's or GP's second gradient). */
export interface NativeOptimizerOptions {
  lr: number;
  weightDecay: number;
  beta1: number;
  beta2: number;
  eps: number;
  clipGradNorm: number;
  samRho: number;
  gradientPenalty: number;
  gradientPenaltyRadius: number;
}

/** The PACE settings a native trainer runs with, its defaults filled in. */
export interface NativePaceOptions {
  sigma: number;
  lambda: number;
  /** The first noisy block: the given one, or the family's default. */
  blockStart: number;
  noise: 'multiplicative' | 'additive' | 'dropout';
  noiseShape: 'BC' | 'BTC';
  sigmaSchedule: 'decreasing' | 'shared' | 'increasing';
  variant: 'pace' | 'lazy' | 'fast' | 'fpa' | 'noise';
  lazyInterval: number;
  /** μ of the ℓ1 term over the adapter parameters. */
  adapterL1: number;
  /** Where adapted linears take the noise: the adapter's output, or the whole output h (PACE_h). */
  noiseOn: 'adapter' | 'h';
  /** The number of noisy copies of the batch (pace and lazy variants). */
  copies: number;
  /** The fast variant's number of training samples. */
  datasetSize?: number;
}

export interface NativeCosineSchedule {
  lr: number;
  epochs: number;
  warmupEpochs: number;
  minLr: number;
  warmupLr: number;
}

/** The resampling of crops and RandAugment's geometric operations (timm's `interpolation`). */
export type NativeInterpolation = 'bilinear' | 'bicubic' | 'random';

/** timm's RandomResizedCrop ranges; absent fields take the core's defaults (timm's). */
export interface NativeResizedCropOptions {
  scale?: [number, number];
  ratio?: [number, number];
  interpolation?: NativeInterpolation;
}

/** timm's RandomErasing; absent fields take the core's defaults (DeiT's recipe: 0.25, pixel, one box). */
export interface NativeRandomErasingOptions {
  prob?: number;
  fill?: 'const' | 'rand' | 'pixel';
  count?: number;
}

/** timm's Mixup in batch mode; absent fields take the core's defaults (DeiT's recipe). */
export interface NativeMixupOptions {
  mixupAlpha?: number;
  cutmixAlpha?: number;
  prob?: number;
  switchProb?: number;
  labelSmoothing?: number;
  correctLambda?: boolean;
}

/** A RandAugment config string as the core reads it. */
export interface NativeRandAugmentConfig {
  numLayers: number;
  magnitude: number;
  /** Infinity: the magnitude is drawn uniformly in [0, magnitude]. */
  magnitudeStd: number;
  magnitudeMax: number;
  probability: number;
  increasing: boolean;
  ops: string[];
}

export interface NativeTrainerHandle {
  step(
    images: NativeTensorHandle,
    targets: NativeTensorHandle,
    options: {
      noise?: Record<string, NativeTensorHandle>;
      indices?: NativeTensorHandle;
      diagnostics?: boolean;
      stepGraphs?: StepGraphMode;
    },
  ): Promise<NativeStepResult>;
  profileSteps(
    images: NativeTensorHandle,
    targets: NativeTensorHandle,
    options: { steps: number; trace: string; stepGraphs?: StepGraphMode },
  ): Promise<NativeStepResult[]>;
  sigmaPerLinear(): Record<string, number>;
  lastNoise(): Record<string, NativeTensorHandle>;
  dispose(): void;
  check(): void;
  runEpoch(
    images: NativeTensorHandle,
    labels: NativeTensorHandle,
    options: {
      batchSize: number;
      epoch: number;
      shuffleSeed: number;
      diagnostics: boolean;
      schedule?: NativeCosineSchedule;
      scheduleEachStep?: boolean;
      normalization?: { mean: number[]; std: number[] };
      /** Images of their own sizes: packed pixels [P, C] with these extents [N, 2] (a crop makes batches). */
      extents?: NativeTensorHandle;
      stopRequested?: boolean;
      augmentCrop?: number;
      augmentFlip?: boolean;
      resizedCrop?: NativeResizedCropOptions;
      randAugment?: string;
      /** Of the resized crop and RandAugment both (bilinear when absent). */
      interpolation?: NativeInterpolation;
      randomErasing?: NativeRandomErasingOptions;
      mixup?: NativeMixupOptions;
      stepGraphs?: StepGraphMode;
      /** The dataset may have changed since the trainer's last epoch (a fit's first): its copy on the device is redone. */
      datasetChanged?: boolean;
    },
    onBatch?: (step: number, steps: number, loss: number, lr: number) => void,
  ): Promise<NativeEpochResult>;
  abort(): void;
  readonly iteration: number;
  /** Data-parallel, every rank calls it; `null` takes part without writing. */
  saveState(path: string | null, metadata: Record<string, string>): Promise<void>;
  /** Rejects (PACE_DIVERGED) unless every trainable parameter and AdamW moment is finite. */
  checkState(): Promise<void>;
  loadState(path: string): Promise<Record<string, string> | null>;
  setLearningRate(lr: number): void;
  /** The optimizer and PACE settings in force, the core's defaults filled in. */
  options(): {
    optimizer: NativeOptimizerOptions;
    pace: NativePaceOptions;
    rank: number;
    worldSize: number;
  };
}

/** The process group of data-parallel training, as the core reports it. */
export interface NativeDistributedGroup {
  rank: number;
  worldSize: number;
  backend: string;
  timeoutSeconds: number;
}

export interface NativeAddon {
  initDistributed(options: {
    backend: string;
    rank: number;
    worldSize: number;
    localRank: number;
    masterAddr: string;
    masterPort: number;
    rendezvousFile?: string;
    agentStorePrefix?: string;
    timeoutSeconds: number;
  }): Promise<NativeDistributedGroup>;
  destroyDistributed(): void;
  distributedGroup(): NativeDistributedGroup | null;
  distributedBarrier(what: string): Promise<void>;
  distributedAgree(settings: [string, string][], what: string): Promise<void>;
  distributedGather(value: number, what: string): Promise<number[]>;
  distributedBackends(): string[];
  NativeStopFlag: new () => NativeStopFlag;
  NativeTrainer: new (
    model: NativeModelHandle,
    optimizer: Partial<NativeOptimizerOptions>,
    pace: Record<string, number | string | undefined>,
    seed: number,
    precision?: 'fp32' | 'tf32' | 'bf16',
  ) => NativeTrainerHandle;
  /** A spec validated by its family's schema (lib/models/families); the core's family reads its fields. */
  createModel(spec: { family: string }, seed?: number): Promise<NativeModelHandle>;
  prepareImages(
    images: NativeTensorHandle,
    size: number,
    normalization: { mean: number[]; std: number[] },
  ): Promise<NativeTensorHandle>;
  augmentImages(
    images: NativeTensorHandle,
    crop: number,
    flip: boolean,
    seed: number,
    extents?: NativeTensorHandle,
  ): Promise<NativeTensorHandle>;
  randAugmentConfig(config: string): NativeRandAugmentConfig;
  randAugmentOp(
    image: NativeTensorHandle,
    op: string,
    magnitude: number,
    negate: boolean,
    fill: number[],
    interpolation?: 'bilinear' | 'bicubic',
  ): Promise<NativeTensorHandle>;
  randAugmentImages(
    images: NativeTensorHandle,
    config: string,
    fill: number[],
    seed: number,
    interpolation?: NativeInterpolation,
  ): Promise<NativeTensorHandle>;
  resizedCropImages(
    images: NativeTensorHandle,
    size: number,
    options: NativeResizedCropOptions,
    flip: boolean,
    seed: number,
  ): Promise<{ images: NativeTensorHandle; boxes: NativeTensorHandle; flipped: NativeTensorHandle }>;
  cmykToRgbPillow(pixels: Uint8Array, shape: [number, number, number]): Promise<NativeTensorHandle>;
  resizeImagePillow(
    pixels: Uint8Array,
    shape: [number, number, number],
    height: number,
    width: number,
    filter: 'bilinear' | 'bicubic',
    window?: { top: number; left: number; height: number; width: number },
  ): Promise<NativeTensorHandle>;
  randomErasingImages(
    images: NativeTensorHandle,
    options: NativeRandomErasingOptions,
    seed: number,
  ): Promise<{ images: NativeTensorHandle; boxes: [number, number, number, number, number][] }>;
  mixupImages(
    images: NativeTensorHandle,
    labels: NativeTensorHandle,
    numClasses: number,
    options: NativeMixupOptions,
    seed: number,
  ): Promise<{
    images: NativeTensorHandle;
    targets: NativeTensorHandle;
    lambda: number;
    cutmix: boolean;
    box: [number, number, number, number];
  }>;
  crossEntropy(logits: NativeTensorHandle, targets: NativeTensorHandle): Promise<NativeTensorHandle>;
  createTensor(
    data: ArrayBuffer,
    byteOffset: number,
    byteLength: number,
    dtype: DType,
    shape: number[],
  ): NativeTensorHandle;
  createTensorFromPieces(pieces: ArrayBufferView[], dtype: DType, shape: number[]): NativeTensorHandle;
  RowsWriter: new (rows: number, rowShape: number[], dtype: DType) => NativeRowsWriter;
  loadSafetensors(
    path: string,
  ): Promise<{ names: string[]; tensors: NativeTensorHandle[]; metadata: Record<string, string> | null }>;
  readSafetensorsHeader(path: string): Promise<NativeSafetensorsHeader>;
  readSafetensorsHeaderSync(path: string): NativeSafetensorsHeader;
  /** The metadata key of a training checkpoint's digest (native/core/io/checkpoint.h). */
  readonly checkpointDigestKey: string;
  /** Reads a training checkpoint whole and checks its digest; rejects as a trainer's loadState would. */
  checkCheckpoint(path: string): Promise<void>;
  saveSafetensors(
    path: string,
    names: string[],
    tensors: NativeTensorHandle[],
    metadata: Record<string, string> | null,
  ): Promise<void>;
  doctor(): NativeDoctorReport;
  measureGemm(
    size: number,
    seconds: number,
    device: string,
    threads: number,
    dtype: 'float32' | 'bfloat16',
  ): Promise<NativeGemmMeasurement>;
  setThreads(intraOp: number): void;
  threads(): { intraOp: number; available: number };
  setPaceLinearStrategy(strategy: string): void;
  paceLinearStrategy(): string;
  setFusedEpilogues(fused: boolean): void;
  fusedEpilogues(): boolean;
  cosineLr(
    schedule: NativeCosineSchedule,
    at: { t: number } | { epoch: number } | { step: number; stepsPerEpoch: number },
  ): number;
  memoryStats(): {
    liveTensors: number;
    tensorBytes: number;
    cpuCacheBytes: number;
    cpuCacheHits: number;
    cpuCacheMisses: number;
  };
  /**
   * Frees the CPU blocks kept for reuse; with `cuda` also the CUDA caching allocator's unused blocks, unless a step
   * graph is busy on another thread (then false).
   */
  releaseCachedMemory(cuda?: boolean): boolean;
  cudaMemory(device: number, resetPeak: boolean): CudaMemoryStats | undefined;
  /** V8's count of external memory in this environment, tensors' native memory included. */
  externalMemory(): number;
  /** How the addon builds its errors: every native failure becomes the PaceError subclass its code names. */
  setErrorFactory(factory: (code: string, message: string) => Error): void;
}

let addon: NativeAddon | undefined;
let location: AddonLocation | undefined;

/**
 * Loads the native addon once: a source build when there is one, else the prebuilt binary package chosen for
 * the libtorch found (see lib/install/addon-location.ts).
 */
export function nativeAddon(): NativeAddon {
  if (addon) return addon;
  location = locateAddon();
  const { file } = location;
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const loaded = withLoadEnvironment(() => require(file) as NativeAddon);
    loaded.setErrorFactory(paceError);
    addon = loaded;
  } catch (error) {
    const reason = error instanceof Error ? error.message : String(error);
    const checkout = fs.existsSync(path.join(packageRoot, 'native', 'core-tests')); // an installed package has none
    // Only the folders searched before the addon's own libtorch folder, where LD_LIBRARY_PATH names that too.
    const ownDir = location.libDir;
    const onPath = libtorchOnLoaderPath();
    const own = ownDir === undefined ? -1 : onPath.findIndex((dir) => sameFolder(dir, ownDir));
    const elsewhere = own < 0 ? onPath : onPath.slice(0, own);
    const hint = /libtorch|libc10|libtorch_cpu|undefined symbol/.test(reason)
      ? elsewhere.length > 0
        ? `LD_LIBRARY_PATH, searched before the addon's own libtorch, holds a libtorch in ${elsewhere.join(', ')}: ` +
          'unset LD_LIBRARY_PATH, or leave that folder out of it'
        : 'the libtorch it was built against is not where it was: reinstall it, or rebuild with `PACE_BUILD_FROM_SOURCE=1 npm rebuild pace-peft`'
      : checkout
        ? 'build it with `npm run build:native` (needs cmake, a C++17 compiler and libtorch; `npm test` and `npm run demo` set all of this up on Debian)'
        : 'rebuild it with `PACE_BUILD_FROM_SOURCE=1 npm rebuild pace-peft` (needs cmake, a C++17 compiler and libtorch)';
    throw new PaceUnsupportedError(`pace-peft: cannot load the native addon ${location.file} (${reason}). ${hint}.`, {
      cause: error,
    });
  }
  return addon;
}

/** Where the loaded addon came from and why it was chosen (for `doctor()`). */
export function nativeAddonLocation(): AddonLocation {
  nativeAddon();
  return location!;
}
