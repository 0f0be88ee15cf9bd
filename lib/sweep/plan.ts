import path from 'node:path';

import { parseRunConfig, trainerAsChecked, weightsSource } from '../cli/config';
import { PaceOptionError } from '../errors';
import { parseOptions } from '../options';
import { FitOptionsSchema } from '../train/fit';
import { TrainerOptionsSchema } from '../train/trainer';
import { MAX_RUNS, type BaseRunConfig, type SweepConfig } from './config';
import { applySetting, expandSettings, settingPaths, type Setting } from './grid';
import { pathNames, runNames, settingLabel, type NameParts } from './naming';
import { expandTasks, type Stage, type SweepTask } from './tasks';

/** Which data a run trains on: a task's tuning or evaluation split, or (protocol `grid`) its evaluation split. */
export type RunStage = Stage | 'grid';

/** One run of a sweep: its folder, what it is, and the run config `pace fit` gets. */
export interface PlannedRun {
  name: string;
  dir: string;
  stage: RunStage;
  /** undefined: the base config's data (a sweep without tasks). */
  task?: SweepTask;
  /** The index of its setting among the sweep's points. */
  point: number;
  setting: Setting;
  seed: number;
  config: BaseRunConfig;
  /** The epochs of a complete run. */
  epochs: number;
}

const stagePrefix: Record<RunStage, string | undefined> = { tune: 'tune', evaluate: 'eval', grid: undefined };

/** The runs of a sweep, named and configured; the evaluation runs of `select` are planned once a point is chosen. */
export class SweepPlan {
  readonly points: Setting[];
  /** The option paths the points set. */
  readonly paths: string[];
  /** undefined stands for the base config's data. */
  readonly tasks: (SweepTask | undefined)[];
  private readonly names = new Map<string, string>();
  /**
   * What each run name stands for: every run the sweep could make (every point's evaluation runs included), in the
   * order the plan makes them.
   */
  readonly byName = new Map<string, { stage: RunStage; task?: string; point: number; seed: number }>();

  constructor(
    readonly config: SweepConfig,
    readonly dir: string,
  ) {
    this.points = expandSettings(config.grid, config.list);
    this.paths = settingPaths(this.points);
    this.tasks = config.tasks ? expandTasks(config.tasks, 'sweep.tasks') : [undefined];
    const stages: RunStage[] = config.protocol === 'select' ? ['tune', 'evaluate'] : ['grid'];
    const perPoint = config.seeds.length + (config.protocol === 'select' ? 1 : 0);
    const total = this.points.length * this.tasks.length * perPoint;
    if (total > MAX_RUNS) {
      const count = (n: number) => n.toLocaleString('en-US');
      throw new PaceOptionError(
        `sweep: ${count(this.points.length)} points × ${count(this.tasks.length)} tasks × ${perPoint} runs each ` +
          `(${config.protocol === 'select' ? 'the tuning run and one per seed' : 'one per seed'}) make ` +
          `${count(total)} runs, more than the ${count(MAX_RUNS)} a sweep plans: sweep fewer values, tasks or seeds`,
      );
    }
    // every run the sweep could make is named at once, so a name never depends on what was selected
    const parts: NameParts[] = [];
    const keys: string[] = [];
    const runs: { stage: RunStage; task?: string; point: number; seed: number }[] = [];
    const pathName = pathNames(this.paths);
    for (const task of this.tasks) {
      for (const stage of stages) {
        const seeds = stage === 'tune' ? [config.tuneSeed] : config.seeds;
        this.points.forEach((setting, point) => {
          // each point is checked once per stage, before anything runs
          this.runConfig(stage, task, point, seeds[0]);
          for (const seed of seeds) {
            parts.push({ stage: stagePrefix[stage], task: task?.name, setting, seed, names: pathName });
            keys.push(this.key(stage, task, point, seed));
            runs.push({ stage, task: task?.name, point, seed });
          }
        });
      }
    }
    runNames(parts).forEach((name, i) => {
      this.names.set(keys[i], name);
      this.byName.set(name, runs[i]);
    });
  }

  private key(stage: RunStage, task: SweepTask | undefined, point: number, seed: number): string {
    return JSON.stringify([stage, task?.name ?? null, point, seed]);
  }

  /** A point's label for tables: `σ 0.5, λ 1`. */
  label(point: number): string {
    return settingLabel(this.points[point], this.paths);
  }

  /** The validated run config of a run. */
  runConfig(stage: RunStage, task: SweepTask | undefined, point: number, seed: number): BaseRunConfig {
    const base = this.config.base;
    const config = applySetting(base, this.points[point]);
    config.trainer = { ...config.trainer, seed };
    // A weights file a point names is relative to the sweep config, as the base's is (made absolute on parsing).
    const pretrained = config.model.pretrained as string | true | undefined;
    if (pretrained !== undefined) {
      config.model = { ...config.model, pretrained: weightsSource(pretrained, this.config.baseDir) };
    }
    if (task) {
      const data = task.data(stage === 'tune' ? 'tune' : 'evaluate', seed);
      if (!data) throw new PaceOptionError(`task '${task.name}' has no ${stage} data`);
      config.data = JSON.parse(JSON.stringify({ ...data, cacheDir: base.data.cacheDir })) as Record<string, unknown>;
      if (task.numClasses !== undefined) config.model = { ...config.model, numClasses: task.numClasses };
    }
    const what = `sweep point ${this.label(point)}${task ? ` of task '${task.name}'` : ''}`;
    parseOptions(TrainerOptionsSchema, trainerAsChecked(config.trainer), `${what}: trainer`);
    parseOptions(FitOptionsSchema, config.fit, `${what}: fit`);
    const parsed = parseRunConfig(config, '/', what);
    if (stage === 'tune' && !parsed.data.validation) {
      throw new PaceOptionError(`${what}: the tuning runs need validation data to select on`);
    }
    return config;
  }

  run(stage: RunStage, task: SweepTask | undefined, point: number, seed: number): PlannedRun {
    const name = this.names.get(this.key(stage, task, point, seed));
    if (name === undefined) throw new PaceOptionError(`no such run: ${stage} point ${point} seed ${seed}`);
    const config = this.runConfig(stage, task, point, seed);
    const epochs = (config.fit as { epochs: number }).epochs;
    return {
      name,
      dir: path.join(this.dir, name),
      stage,
      task,
      point,
      setting: this.points[point],
      seed,
      config,
      epochs,
    };
  }

  /** The runs planned from the start: every run of `grid`; the tuning runs of `select`. */
  initialRuns(): PlannedRun[] {
    return this.tasks.flatMap((task) =>
      this.config.protocol === 'select'
        ? this.points.map((_setting, point) => this.run('tune', task, point, this.config.tuneSeed))
        : this.points.flatMap((_setting, point) =>
            this.config.seeds.map((seed) => this.run('grid', task, point, seed)),
          ),
    );
  }

  /** The evaluation runs of a chosen point: one per seed. */
  evaluationRuns(task: SweepTask | undefined, point: number): PlannedRun[] {
    return this.config.seeds.map((seed) => this.run('evaluate', task, point, seed));
  }
}
