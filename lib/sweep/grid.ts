import { PaceOptionError } from '../errors';

/** A value a sweep sets at an option path: any JSON value. */
export type SettingValue = unknown;

/** One point of a sweep: option paths (`trainer.pace.sigma`) and their values, in the config's order. */
export type Setting = [path: string, value: SettingValue][];

/** Option paths a sweep may set: inside the run config's model, adapters, trainer and fit. */
const OPTION_PATH = /^(model|adapters|trainer|fit)(\.[A-Za-z_][A-Za-z0-9_]*)+$/;

/** Paths the sweep sets itself (seeds, run folders) or takes from its tasks (data). */
const RESERVED: Record<string, string> = {
  'trainer.seed': "the sweep's seeds set it: list them in seeds",
  'fit.runDir': 'the sweep names each run folder',
  'fit.resume': 'the sweep resumes killed runs itself',
  'fit.resumeFrom': 'the sweep resumes killed runs itself',
  'fit.progress': 'each run writes its output to its fit.log',
  'model.numClasses': "a task's class count sets it (or the base config's)",
};

/** Segments that would reach an object's prototype instead of setting an option. */
const UNSAFE_SEGMENTS = new Set(['__proto__', 'constructor', 'prototype']);

function checkSegments(path: string, where: string): void {
  const unsafe = path.split('.').find((segment) => UNSAFE_SEGMENTS.has(segment));
  if (unsafe !== undefined) {
    throw new PaceOptionError(`${where}: '${path}' names '${unsafe}', which is not an option (no option path may)`);
  }
}

/** Checks an option path a grid or list names; errors name where it was given. */
export function checkOptionPath(path: string, where: string): void {
  checkSegments(path, where);
  if (!OPTION_PATH.test(path)) {
    throw new PaceOptionError(
      `${where}: '${path}' is not an option path: a dotted path inside model, adapters, trainer or fit ` +
        `(e.g. trainer.pace.sigma, trainer.optimizer.lr, adapters.rank); data comes from tasks`,
    );
  }
  if (RESERVED[path]) throw new PaceOptionError(`${where}: '${path}' cannot be swept: ${RESERVED[path]}`);
}

/**
 * The points of a sweep: the cartesian product of `grid` (its first path varies slowest, as itertools.product)
 * combined with each entry of `list` (one point per entry when there is no grid; the base alone when neither).
 */
export function expandSettings(
  grid: [string, SettingValue[]][] = [],
  list: Record<string, SettingValue>[] = [{}],
): Setting[] {
  const gridPaths = new Set(grid.map(([path]) => path));
  for (const entry of list) {
    const both = Object.keys(entry).find((path) => gridPaths.has(path));
    if (both !== undefined) {
      throw new PaceOptionError(`'${both}' is in both the grid and the list: give each option in one of them`);
    }
  }
  let points: Setting[] = [[]];
  for (const [path, values] of grid) {
    points = points.flatMap((point) => values.map((value): Setting => [...point, [path, value]]));
  }
  return points.flatMap((point) => list.map((entry): Setting => [...point, ...Object.entries(entry)]));
}

/** The paths that a set of points sets (in order of first appearance). */
export function settingPaths(points: Setting[]): string[] {
  return [...new Set(points.flatMap((point) => point.map(([path]) => path)))];
}

/** `config` (a plain JSON object, not changed) with `setting` applied: each path set, objects created on the way. */
export function applySetting<T extends object>(config: T, setting: Setting): T {
  const copy = structuredClone(config) as Record<string, unknown>;
  for (const [path, value] of setting) {
    checkSegments(path, 'sweep point');
    const keys = path.split('.');
    let at = copy;
    keys.slice(0, -1).forEach((key, i) => {
      const next = Object.hasOwn(at, key) ? at[key] : undefined;
      if (next === undefined) at[key] = {};
      else if (typeof next !== 'object' || next === null || Array.isArray(next)) {
        throw new PaceOptionError(
          `cannot set '${path}': '${keys.slice(0, i + 1).join('.')}' is ${JSON.stringify(next)} in the base config, not an object`,
        );
      }
      at = at[key] as Record<string, unknown>;
    });
    at[keys[keys.length - 1]] = structuredClone(value);
  }
  return copy as T;
}
