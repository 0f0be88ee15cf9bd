import fs from 'node:fs';
import path from 'node:path';

import { z } from 'zod';

import { cacheDirOf, parseRunConfig } from '../cli/config';
import type { DatasetSource } from '../data/sources';
import { withContext } from '../error-context';
import { PaceOptionError } from '../errors';
import { parseOptions } from '../options';
import { checkOptionPath, type SettingValue } from './grid';
import { absoluteSource, checkTuneSeed, SweepTaskSchema, type StageData, type SweepTaskInput } from './tasks';

/**
 * A sweep in one JSON file (`pace sweep --config sweep.json`); relative paths are relative to the file.
 * Which runs it makes (`base`, `grid`, `list`, `tasks`, `seeds`, `protocol`, `tuneSeed`) is stored in its folder
 * and may not change there; how they are scheduled (`parallel`, `threads`, `gpus`) may.
 */
export const SweepConfigSchema = z
  .object({
    /** The run config every run starts from (what `pace fit --config` takes), or the path of one. */
    base: z.union([z.string().min(1), z.record(z.string(), z.unknown())]),
    /** Option paths and the values to try; every combination is a point (the first path varies slowest). */
    grid: z.record(z.string(), z.array(z.unknown()).min(1)).optional(),
    /** Points given one by one (combined with each grid point when both are given). */
    list: z.array(z.record(z.string(), z.unknown())).min(1).optional(),
    /** The datasets; without tasks every run trains on the base config's data. */
    tasks: z.array(SweepTaskSchema).min(1).optional(),
    /** The seeds of the reported runs (each sets trainer.seed, and a few-shot task's training list). */
    seeds: z.array(z.number().int().min(0)).min(1).default([0]),
    /**
     * `select`: the paper's protocol, each point run once on a task's tuning split, the best by validation accuracy
     * then run on its evaluation split with every seed (default with tasks). `grid`: every point with every seed on
     * the evaluation split (or the base config's data), nothing selected (default without tasks).
     */
    protocol: z.enum(['select', 'grid']).optional(),
    /** The seed of the tuning runs (default: the first of `seeds`). */
    tuneSeed: z.number().int().min(0).optional(),
    /** The sweep folder (run folders, results); `pace sweep --dir` overrides it. */
    dir: z.string().min(1).optional(),
    /** Runs at a time (default: one per GPU in `gpus`, else 1). */
    parallel: z.number().int().min(1).optional(),
    /** CPU threads shared among the concurrent runs (default: every CPU this process may use). */
    threads: z.number().int().min(1).max(1024).optional(),
    /** GPU indices: run slot i sees only GPU gpus[i mod n] (CUDA_VISIBLE_DEVICES); the base sets model.device. */
    gpus: z.array(z.number().int().min(0)).min(1).optional(),
  })
  .strict();

export type SweepConfigInput = z.input<typeof SweepConfigSchema>;

/** More points than a sweep could ever run: planning them alone would take minutes before any output. */
const MAX_POINTS = 100_000;
/** More runs than a sweep could ever make (every point's evaluation runs counted): the plan names each at once. */
export const MAX_RUNS = 100_000;
/** More option paths than one point could mean to set (a run config has far fewer options). */
const MAX_PATHS = 100;

/** A run config as the sweep holds it: validated, every path absolute, no run folder. */
export interface BaseRunConfig {
  model: Record<string, unknown>;
  adapters: Record<string, unknown>;
  trainer: Record<string, unknown>;
  data: Record<string, unknown>;
  fit: Record<string, unknown>;
}

/** What decides a sweep's runs: stored in its folder, and compared when the folder is used again. */
export interface SweepIdentity {
  base: BaseRunConfig;
  /** The grid as given (its paths in order). */
  grid: Record<string, SettingValue[]>;
  list?: Record<string, SettingValue>[];
  tasks?: SweepTaskInput[];
  seeds: number[];
  protocol: 'select' | 'grid';
  tuneSeed: number;
}

/** A validated sweep config. */
export interface SweepConfig extends Omit<SweepIdentity, 'grid'> {
  /** The grid's paths and values, in order. */
  grid: [string, SettingValue[]][];
  /** The sweep folder, absolute (undefined when neither the config nor the caller names one). */
  dir?: string;
  /** The folder the points' relative paths (weights files in `model.pretrained`) resolve against: the config's. */
  baseDir: string;
  parallel?: number;
  threads?: number;
  gpus?: number[];
}

/** Domain-adaptation sets with their lists and image roots made absolute. */
function targetsAbsolute<Targets extends Record<string, { list: string; root: string }>>(
  targets: Targets,
  baseDir: string,
): Targets {
  return Object.fromEntries(
    Object.entries(targets).map(([name, set]) => [
      name,
      { ...set, list: path.resolve(baseDir, set.list), root: path.resolve(baseDir, set.root) },
    ]),
  ) as Targets;
}

function stageAbsolute(data: StageData | undefined, baseDir: string): StageData | undefined {
  if (!data) return undefined;
  const at = (source: DatasetSource | undefined) => source && absoluteSource(source, baseDir);
  const domainShift = data.domainShift && targetsAbsolute(data.domainShift, baseDir);
  return JSON.parse(
    JSON.stringify({ train: at(data.train), validation: at(data.validation), test: at(data.test), domainShift }),
  ) as StageData;
}

/** A task with its paths made absolute. */
function taskAbsolute(task: SweepTaskInput, baseDir: string): SweepTaskInput {
  const at = (p: string) => path.resolve(baseDir, p);
  if ('vtab' in task) return { vtab: { ...task.vtab, root: at(task.vtab.root) } };
  if ('fewShot' in task) return { fewShot: { ...task.fewShot, root: at(task.fewShot.root) } };
  if ('fgvc' in task) return { fgvc: { ...task.fgvc, root: at(task.fgvc.root) } };
  if ('domainShift' in task) {
    const { lists, imagenet, targets, shots } = task.domainShift;
    return {
      domainShift: { lists: at(lists), imagenet: at(imagenet), targets: targetsAbsolute(targets, baseDir), shots },
    };
  }
  return JSON.parse(
    JSON.stringify({
      ...task,
      tune: stageAbsolute(task.tune, baseDir),
      evaluate: stageAbsolute(task.evaluate, baseDir),
    }),
  ) as SweepTaskInput;
}

function readJson(file: string, what: string): unknown {
  try {
    return JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (error) {
    throw withContext(error, `${what}: ${(error as Error).message}`);
  }
}

const isObject = (value: unknown): value is Record<string, unknown> =>
  typeof value === 'object' && value !== null && !Array.isArray(value);

/**
 * The base run config, validated as `pace fit --config` does, with every path absolute. With tasks, the data and
 * the class count come from each task, so the base may leave `data.train` and `model.numClasses` out.
 */
function loadBase(
  base: string | Record<string, unknown>,
  baseDir: string,
  what: string,
  tasks: boolean,
): BaseRunConfig {
  const file = typeof base === 'string' ? path.resolve(baseDir, base) : undefined;
  const name = file ? `${what}.base '${base as string}'` : `${what}.base`;
  const raw = file ? readJson(file, name) : base;
  const noData = tasks && isObject(raw) && (raw.data === undefined || (isObject(raw.data) && !raw.data.train));
  const noClasses = tasks && isObject(raw) && isObject(raw.model) && raw.model.numClasses === undefined;
  const filled = isObject(raw)
    ? {
        ...raw,
        ...(noData && { data: { ...(raw.data as object), train: 'from-tasks' } }),
        ...(noClasses && { model: { ...(raw.model as object), numClasses: 1 } }),
      }
    : raw;
  const parsed = parseRunConfig(filled, file ? path.dirname(file) : baseDir, name);
  const at = (source: DatasetSource | undefined) => source && absoluteSource(source, parsed.baseDir);
  const cacheDir = cacheDirOf(parsed);
  const data = noData
    ? { cacheDir }
    : {
        ...parsed.data,
        train: at(parsed.data.train),
        validation: at(parsed.data.validation),
        test: at(parsed.data.test),
        domainShift: parsed.data.domainShift && targetsAbsolute(parsed.data.domainShift, parsed.baseDir),
        cacheDir,
      };
  const model = { ...parsed.model, numClasses: noClasses ? undefined : parsed.model.numClasses };
  // runDir and baseDir are left out: the sweep names each run's folder, and every path is absolute now
  return JSON.parse(
    JSON.stringify({ model, adapters: parsed.adapters, trainer: parsed.trainer, data, fit: parsed.fit }),
  ) as BaseRunConfig;
}

/**
 * Refuses two paths set in one point where one holds the other (`trainer.pace` and `trainer.pace.sigma`): the
 * outer value would replace the inner, or the inner change the outer, while the run's name and the results
 * showed both as given. A point is the grid's paths with one list entry's.
 */
function checkNoNesting(grid: [string, unknown][], list: Record<string, unknown>[], what: string): void {
  const fromGrid = grid.map(([key]): [string, string] => [key, `${what}.grid['${key}']`]);
  const points =
    list.length > 0
      ? list.map((entry, i) => Object.keys(entry).map((key): [string, string] => [key, `${what}.list[${i}]['${key}']`]))
      : [[]];
  for (const fromList of points) {
    const where = new Map([...fromGrid, ...fromList]);
    for (const [inner, innerWhere] of where) {
      const segments = inner.split('.');
      for (let n = 1; n < segments.length; n++) {
        const outer = segments.slice(0, n).join('.');
        const outerWhere = where.get(outer);
        if (outerWhere !== undefined) {
          throw new PaceOptionError(
            `${outerWhere} and ${innerWhere} overlap ('${outer}' holds '${inner}'): one run would set both, ` +
              'and one replace the other; sweep the inner path alone, or give it within the outer value',
          );
        }
      }
    }
  }
}

/** Validates a sweep config given as a value; its relative paths are relative to `baseDir`. */
export function parseSweepConfig(raw: unknown, baseDir: string, what = 'sweep'): SweepConfig {
  const config = parseOptions(SweepConfigSchema, raw, what);
  const grid = Object.entries(config.grid ?? {});
  grid.forEach(([key]) => checkOptionPath(key, `${what}.grid`));
  config.list?.forEach((entry, i) => Object.keys(entry).forEach((key) => checkOptionPath(key, `${what}.list[${i}]`)));
  const listPaths = (config.list ?? []).reduce((most, entry) => Math.max(most, Object.keys(entry).length), 0);
  if (grid.length + listPaths > MAX_PATHS) {
    throw new PaceOptionError(
      `${what}: a point sets ${grid.length + listPaths} option paths (${grid.length} from the grid, ${listPaths} ` +
        `from the list), more than the ${MAX_PATHS} a sweep takes: sweep fewer options`,
    );
  }
  checkNoNesting(grid, config.list ?? [], what);
  const points = grid.reduce((product, [, values]) => product * values.length, 1) * (config.list?.length ?? 1);
  if (points > MAX_POINTS) {
    throw new PaceOptionError(
      `${what}: the grid and list make ${points.toLocaleString('en-US')} points, more than the ` +
        `${MAX_POINTS.toLocaleString('en-US')} a sweep plans (each is at least one fit): sweep fewer values`,
    );
  }
  // A point given twice would run twice into one folder (0 and -0 are one value, as JSON writes both "0").
  const canonical = (value: unknown) =>
    JSON.stringify(value, (_, v: unknown) =>
      Object.is(v, -0)
        ? 0
        : isObject(v)
          ? Object.fromEntries(Object.entries(v).sort(([a], [b]) => (a < b ? -1 : 1)))
          : v,
    );
  const firstRepeat = (values: unknown[]) => {
    const seen = new Map<string, number>();
    for (const [i, value] of values.entries()) {
      const text = canonical(value);
      const first = seen.get(text);
      if (first !== undefined) return { first, again: i, text };
      seen.set(text, i);
    }
    return undefined;
  };
  for (const [key, values] of grid) {
    const repeat = firstRepeat(values);
    if (repeat) {
      throw new PaceOptionError(
        `${what}.grid['${key}']: values ${repeat.first} and ${repeat.again} are the same (${repeat.text}): ` +
          'each is a point, and one point runs once',
      );
    }
  }
  const listRepeat = config.list && firstRepeat(config.list);
  if (listRepeat) {
    throw new PaceOptionError(
      `${what}.list: entries ${listRepeat.first} and ${listRepeat.again} are the same (${listRepeat.text})`,
    );
  }
  const seeds = new Set<number>();
  for (const seed of config.seeds) {
    if (seeds.has(seed)) throw new PaceOptionError(`${what}.seeds: seed ${seed} is listed twice`);
    seeds.add(seed);
  }
  const protocol = config.protocol ?? (config.tasks ? 'select' : 'grid');
  const tuneSeed = config.tuneSeed ?? config.seeds[0];
  if (protocol === 'select') {
    if (!config.tasks) {
      throw new PaceOptionError(
        `${what}.tasks: protocol 'select' needs tasks with tuning and evaluation data (or use protocol 'grid')`,
      );
    }
    config.tasks.forEach((task, i) => {
      if ('evaluate' in task && !task.tune) {
        throw new PaceOptionError(
          `${what}.tasks[${i}].tune: protocol 'select' needs the task's tuning data (train and validation)`,
        );
      }
      checkTuneSeed(task, tuneSeed, `${what}.tasks[${i}]`);
    });
  }
  return {
    base: loadBase(config.base, baseDir, what, config.tasks !== undefined),
    grid,
    list: config.list,
    tasks: config.tasks?.map((task) => taskAbsolute(task, baseDir)),
    seeds: config.seeds,
    protocol,
    tuneSeed,
    dir: config.dir && path.resolve(baseDir, config.dir),
    baseDir,
    parallel: config.parallel,
    threads: config.threads,
    gpus: config.gpus,
  };
}

/** Reads and validates a sweep config file; errors name the file and the bad field. */
export function readSweepConfig(file: string): SweepConfig {
  const what = `sweep config '${file}'`;
  return parseSweepConfig(readJson(file, what), path.dirname(path.resolve(file)), what);
}

/** The part of a config that decides its runs. */
export function identityOf(config: SweepConfig): SweepIdentity {
  const { base, grid, list, tasks, seeds, protocol, tuneSeed } = config;
  return JSON.parse(
    JSON.stringify({ base, grid: Object.fromEntries(grid), list, tasks, seeds, protocol, tuneSeed }),
  ) as SweepIdentity;
}
