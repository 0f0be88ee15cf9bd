import fs from 'node:fs';
import path from 'node:path';

import type { DatasetSource } from '../data/sources';
import { fewShotListFile, fgvcListFiles, vtabListFiles } from '../data/splits';
import { PaceNotFoundError } from '../errors';
import type { SweepPlan } from './plan';

/** The split lists a source reads (a few-shot training list is the seed's; a benchmark's are its stage's). */
function listsOf(source: DatasetSource | undefined): string[] {
  if (source === undefined || typeof source === 'string') return [];
  if ('list' in source) return [source.list];
  if ('fewShot' in source)
    return [fewShotListFile(source.fewShot.root, source.fewShot.dataset, source.part, source.fewShot)];
  // (A benchmark's 'val' part is refused when its run loads it: train and test are its stage's two sets.)
  if ('vtab' in source && source.part !== 'val') {
    return vtabListFiles(source.vtab.root, source.vtab.task, source.vtab.mode)[source.part];
  }
  if ('fgvc' in source && source.part !== 'val') {
    return fgvcListFiles(source.fgvc.root, source.fgvc.dataset, source.fgvc.mode)[source.part];
  }
  return [];
}

/**
 * Refuses a sweep whose tasks name split lists that are not there, before anything runs: a seed without its
 * few-shot list, or a VTAB task without its test list, otherwise fails its evaluation runs after the whole tuning
 * stage (and a mistyped root fails every run, each after loading its model). The error names the task, the
 * stage, the seed and the list, and the seeds whose lists are there.
 */
export function checkSplitLists(plan: SweepPlan): void {
  const { protocol, tuneSeed, seeds } = plan.config;
  const stages =
    protocol === 'select'
      ? ([
          ['tune', [tuneSeed]],
          ['evaluate', seeds],
        ] as const)
      : ([['evaluate', seeds]] as const);
  for (const task of plan.tasks) {
    if (!task) continue;
    for (const [stage, stageSeeds] of stages) {
      for (const seed of stageSeeds) {
        const data = task.data(stage, seed);
        if (!data) continue;
        const lists = [data.train, data.validation, data.test].flatMap(listsOf);
        lists.push(...Object.values(data.domainShift ?? {}).map((target) => target.list));
        for (const list of lists) {
          if (list === undefined || fs.existsSync(list)) continue;
          throw new PaceNotFoundError(
            `sweep task ${task.name} (${stage}, seed ${seed}): split list '${list}' does not exist${seedsThere(list)}`,
          );
        }
      }
    }
  }
}

/** For a list named by its seed (`….seed_3`): the seeds whose lists are beside it. */
function seedsThere(list: string): string {
  const match = /^(.*\.seed_)\d+$/.exec(path.basename(list));
  if (!match) return '';
  let names: string[];
  try {
    names = fs.readdirSync(path.dirname(list));
  } catch {
    return '';
  }
  const found = names
    .filter((name) => name.startsWith(match[1]) && /^\d+$/.test(name.slice(match[1].length)))
    .map((name) => Number(name.slice(match[1].length)))
    .sort((a, b) => a - b);
  return found.length > 0 ? ` (the seeds whose lists are there: ${found.join(', ')})` : '';
}
