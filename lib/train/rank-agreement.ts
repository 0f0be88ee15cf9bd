import type { TensorDataset } from '../data/dataset';
import { agreeAcrossRanks } from '../distributed/group';
import { jsonLeaves } from '../json-differences';
import { runIdentityOf } from './run-identity';

/** The options of one rank's invocation that may differ between ranks: where it writes or reads, how it reports. */
const PER_RANK_OPTIONS = new Set(['runDir', 'resume', 'resumeFrom', 'progress']);

/**
 * Collective, before anything else a data-parallel fit does: every rank compares what decides the fit's
 * collectives (the model, the trainer, every option as given, whether and from which checkpoint it resumes, whether
 * it writes a run folder, the datasets' sizes, layouts, normalisation and augmentation) with rank 0's, so that
 * ranks given different fits stop together naming the first difference, rather than one rank failing its own
 * checks while the others wait in a collective.
 */
export async function agreeOnFit(
  described: object,
  options: Record<string, unknown>,
  sets: { train: TensorDataset; validation?: TensorDataset; test?: TensorDataset },
): Promise<void> {
  const computed = Object.fromEntries(Object.entries(options).filter(([key]) => !PER_RANK_OPTIONS.has(key)));
  const resuming = options.resume !== undefined;
  // Not resuming, a resumeFrom is refused (after this agreement): every rank must be given one, or none.
  const stray = options.resumeFrom !== undefined ? 'no resume, but a resumeFrom' : 'no resume';
  const resumeFrom = resuming ? (options.resumeFrom ?? 'last') : stray;
  // Where a rank writes may differ, but whether it writes may not: the run folder's lock and checkpoints are
  // collective.
  const runFolder = options.runDir !== undefined || resuming ? 'a run folder' : 'none';
  const { model, trainer } = runIdentityOf(described as Record<string, unknown>); // without the rank
  const data = Object.fromEntries(Object.entries(sets).map(([name, set]) => [name, set && describeSet(set)]));
  await agreeAcrossRanks(jsonLeaves({ model, trainer, fit: computed, resumeFrom, runFolder, data }), 'fits');
}

/** What of a dataset decides the fit besides its samples: their number and layout, normalisation and augmentation. */
function describeSet(set: TensorDataset): Record<string, unknown> {
  return {
    size: set.length,
    images: `${set.images.dtype} [${set.images.shape.join(', ')}]`,
    normalization: set.normalization ?? 'none',
    augment: set.augment ?? 'none',
  };
}

/** Collective: every rank resumed at the same epoch (each reads the checkpoint itself). */
export async function agreeOnStartEpoch(startEpoch: number): Promise<void> {
  await agreeAcrossRanks([['the epoch the fit resumes at', String(startEpoch)]], 'resumed checkpoints');
}

/**
 * Collective: rank 0's outcome of taking the run folder's lock (`held`, or why it was refused), so that a refused
 * fit ends on every rank at once instead of leaving the others waiting in the fit's first collective.
 */
export async function agreeOnRunFolderLock(outcome: string): Promise<void> {
  await agreeAcrossRanks([["rank 0's hold on the run folder", outcome]], 'run folder locks');
}
