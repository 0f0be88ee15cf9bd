/**
 * pace-peft: fine-tune pretrained vision transformers with parameter-efficient adapters and the PACE
 * consistency regulariser, with every tensor operation in libtorch.
 */
export {
  PaceError,
  PaceOptionError,
  PaceInputError,
  PaceShapeError,
  PaceFileError,
  PaceNotFoundError,
  PaceStateError,
  PaceBusyError,
  PaceDivergedError,
  PaceUnsupportedError,
  PaceNetworkError,
  PaceDistributedError,
  PaceWriteError,
  PaceInternalError,
  paceError,
  PACE_ERROR_CODES,
  type PaceErrorCode,
} from './errors';
export { DTypeSchema, type DType, type TypedArray } from './dtype';
export { Tensor, tensor, type NestedNumbers, type TensorData, type TensorOptions } from './tensor';
export {
  loadTensors,
  saveTensors,
  readTensorHeader,
  disposeTensors,
  type TensorFile,
  type TensorHeader,
  type TensorHeaderEntry,
  type TensorMetadata,
  type TensorRecord,
  type SaveTensorsOptions,
} from './safetensors';
export {
  doctor,
  measureGemm,
  formatDoctorReport,
  memoryStats,
  releaseCachedMemory,
  cudaMemoryStats,
  type MemoryStats,
  type DoctorReport,
  type GemmMeasurement,
  type GemmOptions,
} from './doctor';
export {
  setThreads,
  threads,
  setPaceLinearStrategy,
  paceLinearStrategy,
  setFusedEpilogues,
  fusedEpilogues,
  PaceLinearStrategySchema,
  type PaceLinearStrategy,
  type ThreadSettings,
} from './performance';
export {
  Model,
  createModel,
  type CreateModelOptions,
  type ForwardOptions,
  type LoadReport,
  type ParameterInfo,
} from './models/model';
export {
  listModels,
  resolveModelName,
  preprocessingFor,
  ModelSpecSchema,
  type ModelSpec,
  type ModelSpecInput,
  type VitSpec,
  type SwinSpec,
  type Preprocessing,
} from './models/specs';
export {
  downloadPretrained,
  DownloadPretrainedOptionsSchema,
  type DownloadPretrainedOptions,
  type PretrainedWeights,
} from './hub/download';
export { listPretrained, type PretrainedInfo } from './hub/catalog';
export { parsePretrainedName, isPretrainedName, type PretrainedRef } from './hub/names';
export { type DownloadProgress } from './hub/progress';
export {
  AdapterTypeSchema,
  type AdapterType,
  type AdapterOptions,
  type AdapterConfig,
  type LoadAdaptersOptions,
} from './models/adapters';
export {
  Trainer,
  type TrainerOptions,
  type ResolvedTrainerOptions,
  type StepResult,
  type TrainStepOptions,
} from './train/trainer';
export { cosineSchedule, type CosineScheduleOptions, type LrSchedule } from './train/schedule';
export { type FitOptions, type History } from './train/fit';
export { type StepGraphCounts, type CudaMemoryStats } from './native';
export { evaluateDataset, EvaluateOptionsSchema, type EvaluateOptions, type EvaluationReport } from './eval/evaluate';
export {
  earlyStopping,
  type Callback,
  type EpochLogs,
  type FitControl,
  type EarlyStoppingOptions,
  MONITORED_METRICS,
  type MonitoredMetric,
} from './train/callbacks';
export { writeReport, renderReport, type ReportOptions, type WrittenReport } from './report/write-report';
export { readRuns, readRun, type RunRecord, type EpochRow, type MetricKey } from './report/read-runs';
export { labelRuns, type RunLabel } from './report/labels';
export { settingGrids, type SettingGrid, type GridAxis, type GridCell, type GridMetric } from './report/grids';
export { TensorDataset, type Normalization, type Augmentation } from './data/dataset';
export { readIdx, loadIdxDataset, type IdxArray } from './data/idx';
export { prepareImages, augmentImages } from './data/prepare';
export {
  AugmentationSchema,
  augmentFill,
  INTERPOLATIONS,
  crossEntropy,
  mixupImages,
  randomErasingImages,
  randAugmentConfig,
  randAugmentImages,
  randAugmentOp,
  resizedCropImages,
} from './data/augment';
export { loadImages, imageFolderEntries, type LoadImagesOptions, type SkippedImage } from './data/images';
export {
  parseSplitList,
  vtabSplits,
  fewShotSplits,
  fgvcSplits,
  VTAB_TASKS,
  FGVC_DATASETS,
  FEW_SHOT_DATASETS,
  type SplitEntry,
} from './data/splits';
export { loadTensorDataset } from './data/tensor-file';
export {
  DOMAIN_SHIFT_SETS,
  IMAGENET_CLASSES,
  IMAGENET_NORMALIZATION,
  domainShiftEntries,
  classesOf,
  DOMAIN_SHIFT_RESIZES,
  type DomainShiftResize,
  type DomainShiftSetName,
} from './data/domain-shift';
export {
  checkDomainShiftTargets,
  evaluateDomainShift,
  ClassSubsetSchema,
  DomainShiftListSchema,
  DomainShiftTargetsSchema,
  type ClassSubset,
  type DomainShiftList,
  type DomainShiftTarget,
  type DomainShiftResult,
  type DomainShiftReport,
  type EvaluateDomainShiftOptions,
} from './eval/domain-shift';
export { formatDomainShiftTable } from './eval/domain-shift-table';
export {
  folderClassNames,
  evaluationTransformOf,
  loadDatasetSource,
  DatasetSourceSchema,
  type DatasetSource,
  type SourceOptions,
} from './data/sources';
export {
  EVAL_TRANSFORM_METADATA_KEY,
  EvalTransformSchema,
  readEvalTransform,
  timmEvalTransform,
  type EvalTransform,
} from './data/eval-transform';
export { RunConfigSchema, readRunConfig, type RunConfig } from './cli/config';
export { createInferenceServer, type InferenceServer } from './serve/server';
export { ServeOptionsSchema, type ServeOptions } from './serve/options';
export {
  initDistributed,
  destroyDistributed,
  distributedGroup,
  distributedBarrier,
  DistributedOptionsSchema,
  type DistributedOptions,
  type DistributedGroup,
} from './distributed/group';
export { launch, LaunchOptionsSchema, type LaunchOptions, type LaunchResult } from './distributed/launch';
export {
  sweep,
  threadsPerRun,
  type SweepEvent,
  type SweepOptions,
  type SweepOutcome,
  type RunInfo,
} from './sweep/sweep';
export {
  SweepConfigSchema,
  parseSweepConfig,
  readSweepConfig,
  type SweepConfig,
  type SweepConfigInput,
} from './sweep/config';
export { resultsMarkdown } from './sweep/markdown';
export { resultsCsv } from './sweep/csv';
export { type SweepResults, type RunRow, type Summary, type Selection, type TaskInfo } from './sweep/results';
export { VTAB_GROUPS } from './sweep/vtab-groups';
