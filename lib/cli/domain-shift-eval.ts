import path from 'node:path';

import { evaluateDomainShift, type DomainShiftReport, type DomainShiftTarget } from '../eval/domain-shift';
import type { Normalization } from '../data/normalization';
import { evaluationTransformOf } from '../data/sources';
import { formatDomainShiftTable } from '../eval/domain-shift-table';
import type { Model } from '../models/model';
import type { RunConfig } from './config';
import { UsageError } from './usage';

/**
 * The mean and std the run's training images were normalised with (its `data.train` source's), which its
 * domain-adaptation sets are then normalised with too: the reference uses ImageNet's for both.
 */
export function trainingNormalization(config: RunConfig, model: Model): Normalization {
  const { mean, std } = evaluationTransformOf(config.data.train, model.preprocessing, config.baseDir);
  return { mean, std };
}

/** A run config's `data.domainShift` sets with their paths made absolute (they are relative to the config). */
export function domainShiftTargets(config: RunConfig): Record<string, DomainShiftTarget> | undefined {
  const sets = config.data.domainShift;
  if (!sets) return undefined;
  const targets: Record<string, DomainShiftTarget> = {};
  for (const [name, target] of Object.entries(sets)) {
    targets[name] = {
      ...target,
      list: path.resolve(config.baseDir, target.list),
      root: path.resolve(config.baseDir, target.root),
    };
  }
  return targets;
}

/**
 * `pace eval --domain-shift`: the config's `data.domainShift` sets (paths relative to the config) evaluated with
 * `evaluateDomainShift`; returns the report as JSON, or with `markdown` as the paper's table.
 */
export async function domainShiftEval(
  config: RunConfig,
  model: Model,
  options: { batchSize: number; markdown: boolean; label: string },
): Promise<string> {
  const targets = domainShiftTargets(config);
  if (!targets) {
    throw new UsageError(
      '--domain-shift needs data.domainShift in the config: { "imagenet-a": { "list": ..., "root": ... }, ... }',
    );
  }
  const report: DomainShiftReport = await evaluateDomainShift(model, {
    targets,
    batchSize: options.batchSize,
    normalization: trainingNormalization(config, model),
  });
  return options.markdown
    ? formatDomainShiftTable([{ label: options.label, report }])
    : JSON.stringify(report, null, 2);
}
