import fs from 'node:fs';
import path from 'node:path';

import { z } from 'zod';

import { DatasetSourceSchema } from '../data/sources';
import { DomainShiftTargetsSchema } from '../eval/domain-shift';
import { withContext } from '../error-context';
import { PaceOptionError } from '../errors';
import { isPretrainedName } from '../hub/names';
import { AdapterOptionsSchema } from '../models/adapters';
import { ModelSpecSchema } from '../models/specs';
import { parseOptions } from '../options';
import { FitOptionsSchema } from '../train/fit';
import { TrainerOptionsSchema } from '../train/trainer';

/** A run described in one JSON file: `pace fit --config run.json`. Relative paths are relative to the file. */
export const RunConfigSchema = z
  .object({
    model: z
      .object({
        /** A timm name (`vit_base_patch16_224`) or a spec. */
        name: z.union([z.string().min(1), ModelSpecSchema]),
        numClasses: z.number().int().min(1),
        imgSize: z.number().int().min(1).optional(),
        /**
         * The backbone's weights: a file (safetensors or `.npz`), or weights by name downloaded into the Hugging
         * Face cache: a pretrained name (`vit_base_patch16_224.augreg_in21k`, `hf-hub:org/name`) or `true` (`name`'s).
         */
        pretrained: z.union([z.literal(true), z.string().min(1)]).optional(),
        dropPathRate: z.number().min(0).lt(1).optional(),
        device: z.string().min(1).default('cpu'),
      })
      .strict(),
    adapters: AdapterOptionsSchema.default(AdapterOptionsSchema.parse({})),
    /** Trainer options (optimizer, pace, seed), as `new Trainer(model, options)` takes them. */
    trainer: z.record(z.string(), z.unknown()).default({}),
    data: z
      .object({
        /** A tensor file, an IDX pair, an image folder, a split list, or a VTAB / few-shot / FGVC split. */
        train: DatasetSourceSchema,
        validation: DatasetSourceSchema.optional(),
        test: DatasetSourceSchema.optional(),
        /** A folder for decoded-image caches, so a second run starts at once. */
        cacheDir: z.string().min(1).optional(),
        /** The domain-adaptation sets `pace eval --domain-shift` evaluates, by name: `{ list, root, classes? }`. */
        domainShift: DomainShiftTargetsSchema.optional(),
      })
      .strict(),
    /** Fit options (epochs, batchSize, evalEvery, schedule, ...), as `trainer.fit` takes them. */
    fit: z.record(z.string(), z.unknown()),
    runDir: z.string().min(1).optional(),
  })
  .strict();

/** A validated run config; `baseDir` is the config file's folder, against which dataset paths resolve. */
export type RunConfig = z.output<typeof RunConfigSchema> & { baseDir: string };

/** How messages name a config file: `config 'run.json'`, followed by the field (`.fit.epochs`). */
export function configName(file: string): string {
  return `config '${file}'`;
}

/** Reads and validates a run config; errors name the file and the bad field. */
export function readRunConfig(file: string): RunConfig {
  let raw: unknown;
  try {
    raw = JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (error) {
    throw withContext(error, `${configName(file)}: ${(error as Error).message}`);
  }
  return parseRunConfig(raw, path.dirname(path.resolve(file)), configName(file));
}

/**
 * Fit options that belong to one invocation, never to a config: a config naming another run's folder would have
 * every run of it write there (or continue that run).
 */
const INVOCATION_FIT_KEYS: Record<string, string> = {
  runDir: 'the run folder is the top-level "runDir", or pace fit --run-dir',
  resume: 'continue a run with pace fit --resume DIR',
  resumeFrom: 'pace fit --resume-from chooses the checkpoint to continue from',
  progress: 'pace fit shows progress unless --quiet',
};

/**
 * Whether a config's trainer section leaves the fast variant's datasetSize to pace fit, which takes the training
 * set's (an image folder's size is not known before it is read).
 */
export function datasetSizeFromData(trainer: unknown): boolean {
  const pace = (trainer as { pace?: { variant?: unknown; datasetSize?: unknown } } | undefined)?.pace;
  return pace?.variant === 'fast' && pace.datasetSize === undefined;
}

/** A config's trainer section as Trainer will check it once pace fit has given it the training set's size. */
export function trainerAsChecked(trainer: unknown): unknown {
  if (!datasetSizeFromData(trainer)) return trainer;
  const section = trainer as { pace: Record<string, unknown> };
  return { ...section, pace: { ...section.pace, datasetSize: 1 } };
}

/**
 * The `trainer` and `fit` sections checked as Trainer and Trainer.fit will check them, so a mistake is reported
 * with the config's name before anything is loaded. `fit` may leave out what flags can give (epochs, batchSize).
 * The sections are returned as given: defaults are left to the trainer (and a sweep's stored config unchanged).
 */
function checkSections(config: { trainer: unknown; fit: Record<string, unknown> }, what: string): void {
  parseOptions(TrainerOptionsSchema, trainerAsChecked(config.trainer), `${what}.trainer`);
  for (const key of Object.keys(config.fit)) {
    if (Object.hasOwn(INVOCATION_FIT_KEYS, key)) {
      throw new PaceOptionError(`${what}.fit.${key}: not a config setting: ${INVOCATION_FIT_KEYS[key]}`);
    }
  }
  parseOptions(FitOptionsSchema.partial(), config.fit, `${what}.fit`);
}

/** The config's decoded-image cache folder, made absolute: like every path of the config, relative to its file. */
export function cacheDirOf(config: RunConfig): string | undefined {
  return config.data.cacheDir && path.resolve(config.baseDir, config.data.cacheDir);
}

/**
 * A config's `model.pretrained` with a file made absolute against `baseDir`; a pretrained name (or true) is left
 * for createModel to download.
 */
export function weightsSource<T extends string | true | undefined>(pretrained: T, baseDir: string): T {
  if (typeof pretrained !== 'string' || isPretrainedName(pretrained)) return pretrained;
  return path.resolve(baseDir, pretrained) as T;
}

/**
 * Validates a run config given as a value (errors name `what` and the bad field); its relative paths are relative
 * to `baseDir`, as a file's are to its folder.
 */
export function parseRunConfig(raw: unknown, baseDir: string, what: string): RunConfig {
  const config = parseOptions(RunConfigSchema, raw, what);
  checkSections(config, what);
  return {
    ...config,
    baseDir,
    model: { ...config.model, pretrained: weightsSource(config.model.pretrained, baseDir) },
    runDir: config.runDir === undefined ? undefined : path.resolve(baseDir, config.runDir),
  };
}
