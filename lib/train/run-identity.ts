import type { TensorDataset } from '../data/dataset';
import { datasetFingerprint, normalizationOf } from '../data/dataset-fingerprint';
import { jsonDifferences } from '../json-differences';

/**
 * What makes a resumed fit the continuation of the run it resumes: the model (backbone, its configuration, a
 * fingerprint of its frozen weights, and its adapters), the trainer's options and what shapes the fit's course
 * (schedule, batches, shuffles, augmentation, the training set: its size, normalisation and contents' fingerprint).
 * Every checkpoint carries it in its metadata (`run`) and the run folder's config.json holds what it is made from;
 * a resume with anything else would continue another run's state under this one's name, so it is refused, naming
 * what differs. Options that leave the course alone (evaluation, progress, diagnostics, step graphs, the run folder)
 * may change, and so may `epochs` and the trainer's `optimizer.lr`: training a stopped run for longer, or at a
 * lower rate after it diverged, is a choice a user makes on purpose, though it is then no longer the uninterrupted
 * run.
 */
export type RunIdentity = Record<string, unknown>;

/** The metadata key of a checkpoint's run identity. */
export const RUN_IDENTITY_KEY = 'run';

const fitFieldsOfTheCourse = ['batchSize', 'schedule', 'scheduleStepping', 'shuffleSeed', 'augment'];

/**
 * The identity of the run a config.json describes (`{ model, trainer, fit, data }`, as fit writes it). The rank
 * is left out (every rank of one run shares the identity); the number of ranks is checked by the native loader.
 */
export function runIdentityOf(config: Record<string, unknown>): RunIdentity {
  const trainer = Object.fromEntries(
    Object.entries((config.trainer ?? {}) as Record<string, unknown>).filter(
      ([key]) => key !== 'rank' && key !== 'worldSize',
    ),
  );
  const fit = (config.fit ?? {}) as Record<string, unknown>;
  return {
    model: config.model,
    trainer,
    fit: Object.fromEntries(fitFieldsOfTheCourse.filter((key) => fit[key] !== undefined).map((key) => [key, fit[key]])),
    data: config.data,
  };
}

/**
 * What tells a training set from another of the same size: its contents' fingerprints and how its pixels are
 * normalised. A resume on another set would continue the run on other samples (and, with the fast variant, apply
 * one set's logit history to the other's).
 */
export function trainingSetIdentity(train: TensorDataset): Record<string, unknown> {
  const normalization = normalizationOf(train);
  return { fingerprint: datasetFingerprint(train), ...(normalization && { normalization }) };
}

type Compared = { trainer?: { optimizer?: Record<string, unknown> }; data?: Record<string, unknown> } | null;

/**
 * What of an identity a resume compares (a copy): all but the learning rate, which a resume may change (recorded
 * all the same); against a run recorded before training sets were fingerprinted, all but the set's fingerprint and
 * normalisation (compared on its size alone, as it was then).
 */
function compared(identity: unknown, fingerprinted: boolean): Compared {
  const copy = JSON.parse(JSON.stringify(identity ?? null)) as Compared;
  if (copy?.trainer?.optimizer && typeof copy.trainer.optimizer === 'object') delete copy.trainer.optimizer.lr;
  if (!fingerprinted && copy?.data && typeof copy.data === 'object') {
    delete copy.data.fingerprint;
    delete copy.data.normalization;
  }
  return copy;
}

/** The differences between a saved identity and this run's, as `path: saved → now` (none: the same run). */
export function identityDifferences(saved: unknown, current: RunIdentity): string[] {
  const shown = (value: unknown) => JSON.stringify(value) ?? 'absent';
  const savedData = (saved as Compared)?.data;
  const fingerprinted = !(savedData && typeof savedData === 'object' && !('fingerprint' in savedData));
  return jsonDifferences(compared(saved, fingerprinted), compared(current, fingerprinted)).map(
    ({ path, before, after }) => `${path}: ${shown(before)} → ${shown(after)}`,
  );
}
