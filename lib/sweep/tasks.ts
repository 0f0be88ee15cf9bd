import path from 'node:path';

import { z } from 'zod';

import { IMAGENET_CLASSES } from '../data/domain-shift';
import { DatasetSourceSchema, type DatasetSource } from '../data/sources';
import { DomainShiftTargetsSchema } from '../eval/domain-shift';
import { FEW_SHOT_DATASETS, FGVC_DATASETS, VTAB_TASKS } from '../data/splits';
import { PaceOptionError } from '../errors';

/** The training and held-out data of one stage of a task. */
const StageDataSchema = z
  .object({
    train: DatasetSourceSchema,
    validation: DatasetSourceSchema.optional(),
    test: DatasetSourceSchema.optional(),
    /** The domain-adaptation sets a completed run evaluates (its run folder's domain-shift.json). */
    domainShift: DomainShiftTargetsSchema.optional(),
  })
  .strict();
export type StageData = z.infer<typeof StageDataSchema>;

/**
 * A task of a sweep: a benchmark named in short (its tuning and evaluation splits follow the reference), or any
 * data with both stages given. `tune` must hold a validation set (selection reads its accuracy), `evaluate` a test
 * set (the reported accuracy).
 */
export const SweepTaskSchema = z.union([
  /** A VTAB-1k task (NOAH layout): tune train800 → val200, evaluate train800val200 → test. */
  z.object({ vtab: z.object({ root: z.string().min(1), task: z.string().min(1) }).strict() }).strict(),
  /** A few-shot dataset: one task per shot count; the training list's seed is the run's seed. */
  z
    .object({
      fewShot: z
        .object({
          root: z.string().min(1),
          dataset: z.string().min(1),
          shots: z.union([z.number().int().min(1), z.array(z.number().int().min(1)).min(1)]),
        })
        .strict(),
    })
    .strict(),
  /**
   * The paper's domain adaptation: train on ImageNet's 16-shot list of the run's seed (NOAH's
   * `imagenet/train_meta.list.num_shot_16.seed_<seed>` under `lists`, paths under `imagenet`; `resized-crop-flip`),
   * select on the source validation list (`imagenet/unofficial_val_list_4_shot16seed0`, whatever `shots` says, as
   * NOAH), evaluate on `targets` (ImageNet val,
   * -Sketch, -V2, -A, -R: each a list and its image root; A's and R's logits restricted to their classes).
   */
  z
    .object({
      domainShift: z
        .object({
          lists: z.string().min(1),
          imagenet: z.string().min(1),
          targets: DomainShiftTargetsSchema,
          shots: z.number().int().min(1).default(16),
        })
        .strict(),
    })
    .strict(),
  /** A FGVC dataset (VPT's splits): tune train → val, evaluate train + val → test. */
  z.object({ fgvc: z.object({ root: z.string().min(1), dataset: z.string().min(1) }).strict() }).strict(),
  z
    .object({
      name: z.string().min(1),
      /** The head's class count, when it is not the base config's. */
      numClasses: z.number().int().min(1).optional(),
      tune: StageDataSchema.optional(),
      evaluate: StageDataSchema,
    })
    .strict(),
]);
export type SweepTaskInput = z.infer<typeof SweepTaskSchema>;

/**
 * How a task is laid out in the results: VTAB by group, few-shot by shots, domain adaptation by target set, the
 * rest as plain rows.
 */
export type TaskKind = 'vtab' | 'fewShot' | 'fgvc' | 'domainShift' | 'other';

/** The two stages of the paper's protocol. */
export type Stage = 'tune' | 'evaluate';

/** A task, expanded: its data for each stage as a function of the run's seed (few-shot lists depend on it). */
export interface SweepTask {
  name: string;
  kind: TaskKind;
  /** The VTAB task's name (`cifar`, `dtd`, ...), for its group. */
  vtabTask?: string;
  /** A few-shot task's dataset and shot count. */
  dataset?: string;
  shots?: number;
  numClasses?: number;
  /** The data of a stage for a run of `seed`; undefined when the task has no such stage. */
  data(stage: Stage, seed: number): StageData | undefined;
}

/**
 * NOAH's ImageNet validation list, the one it selects on whatever the shot count (it ships no other), and the
 * training list's seed it was drawn beside: the training lists of other seeds share images with it (37 and 41 of
 * its 2,959 for seeds 1 and 2).
 */
const DOMAIN_SHIFT_VALIDATION_LIST = 'unofficial_val_list_4_shot16seed0';
const DOMAIN_SHIFT_VALIDATION_SEED = 0;

/** Refuses to tune a domain-shift task on a seed whose training images the validation list holds. */
export function checkTuneSeed(task: SweepTaskInput, tuneSeed: number, where: string): void {
  if (!('domainShift' in task) || tuneSeed === DOMAIN_SHIFT_VALIDATION_SEED) return;
  throw new PaceOptionError(
    `${where}: ImageNet's validation list was drawn beside the seed-${DOMAIN_SHIFT_VALIDATION_SEED} training ` +
      `list, and seed ${tuneSeed}'s training list shares images with it, so tuning on it would select on images ` +
      `it trained on: set tuneSeed to ${DOMAIN_SHIFT_VALIDATION_SEED} (the seeds evaluated may be any)`,
  );
}

function known(table: Readonly<Record<string, unknown>>, name: string, what: string, where: string): void {
  if (!Object.hasOwn(table, name)) {
    throw new PaceOptionError(
      `${where}: '${name}' is not a ${what} (expected one of ${Object.keys(table).join(', ')})`,
    );
  }
}

/** The tasks of a config, shorthands expanded (few-shot: one task per shot count); errors name the entry. */
export function expandTasks(tasks: SweepTaskInput[], what: string): SweepTask[] {
  const expanded = tasks.flatMap((task, i): SweepTask[] => {
    const where = `${what}[${i}]`;
    if ('vtab' in task) {
      const { root, task: name } = task.vtab;
      known(VTAB_TASKS, name, 'VTAB-1k task', `${where}.vtab.task`);
      const vtab = (mode: 'tune' | 'evaluate') => ({ root, task: name, mode });
      return [
        {
          name,
          kind: 'vtab',
          vtabTask: name,
          numClasses: VTAB_TASKS[name],
          data: (stage) =>
            stage === 'tune'
              ? { train: { vtab: vtab('tune'), part: 'train' }, validation: { vtab: vtab('tune'), part: 'test' } }
              : { train: { vtab: vtab('evaluate'), part: 'train' }, test: { vtab: vtab('evaluate'), part: 'test' } },
        },
      ];
    }
    if ('fewShot' in task) {
      const { root, dataset, shots } = task.fewShot;
      known(FEW_SHOT_DATASETS, dataset, 'few-shot dataset', `${where}.fewShot.dataset`);
      return (Array.isArray(shots) ? shots : [shots]).map((k) => ({
        name: `${dataset}-${k}shot`,
        kind: 'fewShot',
        dataset,
        shots: k,
        numClasses: FEW_SHOT_DATASETS[dataset],
        data: (stage, seed) => {
          const fewShot = { root, dataset, shots: k, seed };
          const held =
            stage === 'tune' ? { validation: { fewShot, part: 'val' } } : { test: { fewShot, part: 'test' } };
          return { train: { fewShot, part: 'train' }, ...held } as StageData;
        },
      }));
    }
    if ('domainShift' in task) {
      const { lists, imagenet, targets, shots } = task.domainShift;
      // ImageNet's lists, as NOAH lays them out: the training images, with the random resized crop and flip of
      // the stronger augmentation the paper cites for domain adaptation (NOAH's recipe: the rest of it, RandAugment,
      // erasing and mixup, is the base's fit.augment), and the source validation split (the evaluation transform).
      const list = (file: string, transform: 'resized-crop-flip' | 'center-crop') => ({
        list: path.join(lists, 'imagenet', file),
        root: imagenet,
        numClasses: IMAGENET_CLASSES,
        transform,
        normalization: 'imagenet' as const,
      });
      return [
        {
          name: `imagenet-${shots}shot`,
          kind: 'domainShift',
          shots,
          numClasses: IMAGENET_CLASSES,
          data: (stage, seed) => {
            const train = list(`train_meta.list.num_shot_${shots}.seed_${seed}`, 'resized-crop-flip');
            return stage === 'tune'
              ? { train, validation: list(DOMAIN_SHIFT_VALIDATION_LIST, 'center-crop') }
              : { train, domainShift: targets };
          },
        },
      ];
    }
    if ('fgvc' in task) {
      const { root, dataset } = task.fgvc;
      known(FGVC_DATASETS, dataset, 'FGVC dataset', `${where}.fgvc.dataset`);
      const fgvc = (mode: 'tune' | 'evaluate') => ({ root, dataset, mode });
      return [
        {
          name: dataset,
          kind: 'fgvc',
          dataset,
          numClasses: FGVC_DATASETS[dataset].numClasses,
          data: (stage) =>
            stage === 'tune'
              ? { train: { fgvc: fgvc('tune'), part: 'train' }, validation: { fgvc: fgvc('tune'), part: 'test' } }
              : { train: { fgvc: fgvc('evaluate'), part: 'train' }, test: { fgvc: fgvc('evaluate'), part: 'test' } },
        },
      ];
    }
    if (task.tune && !task.tune.validation) {
      throw new PaceOptionError(`${where}.tune.validation: required (the selection reads its accuracy)`);
    }
    if (!task.evaluate.test && !task.evaluate.validation) {
      throw new PaceOptionError(`${where}.evaluate: needs a test (or validation) set to report an accuracy`);
    }
    const { tune, evaluate } = task;
    return [
      {
        name: task.name,
        kind: 'other',
        numClasses: task.numClasses,
        data: (stage) => (stage === 'tune' ? tune : evaluate),
      },
    ];
  });
  const names = new Set<string>();
  for (const { name } of expanded) {
    if (names.has(name)) throw new PaceOptionError(`${what}: the task '${name}' is listed twice`);
    names.add(name);
  }
  return expanded;
}

/** A dataset source with its paths made absolute (a run's config is written away from the sweep's). */
export function absoluteSource(source: DatasetSource, baseDir: string): DatasetSource {
  const at = (p: string) => path.resolve(baseDir, p);
  if (typeof source === 'string') return at(source);
  if ('idx' in source) return { idx: [at(source.idx[0]), at(source.idx[1])] };
  if ('folder' in source) return { folder: at(source.folder) };
  if ('list' in source) return { ...source, list: at(source.list), root: at(source.root) };
  if ('vtab' in source) return { ...source, vtab: { ...source.vtab, root: at(source.vtab.root) } };
  if ('fewShot' in source) return { ...source, fewShot: { ...source.fewShot, root: at(source.fewShot.root) } };
  if ('fgvc' in source) return { ...source, fgvc: { ...source.fgvc, root: at(source.fgvc.root) } };
  const unknown: never = source;
  throw new PaceOptionError(`a data source the sweep cannot place: ${JSON.stringify(unknown)}`);
}
