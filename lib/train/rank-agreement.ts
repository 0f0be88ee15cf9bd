import crypto from 'node:crypto';

import type { TensorDataset } from '../data/dataset';
import { datasetFingerprint } from '../data/dataset-fingerprint';
import { agreeAcrossRanks, gatherAcrossRanks } from '../distributed/group';
import { PaceDistributedError } from '../errors';
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

/**
 * What of a dataset decides the fit: the number and layout of its samples, their contents (fingerprints: ranks
 * holding other versions of a set would otherwise train on a mix of both, as `evaluate` refuses for its sets),
 * normalisation and augmentation.
 */
function describeSet(set: TensorDataset): Record<string, unknown> {
  return {
    size: set.length,
    images: `${set.images.dtype} [${set.images.shape.join(', ')}]`,
    fingerprint: datasetFingerprint(set),
    normalization: set.normalization ?? 'none',
    augment: set.augment ?? 'none',
  };
}

/**
 * Collective: every rank resumed the same way (each reads its checkpoint itself): at the same epoch, from a
 * checkpoint or starting over (a run killed before its first checkpoint), with the same history (it decides
 * collectives too: the best validation accuracy so far, whether an epoch writes `best`), and the same best state a
 * callback marked (restored on some ranks only, the ranks would go on with different weights).
 */
export async function agreeOnStartEpoch(resume: {
  startEpoch: number;
  resumed: boolean;
  history: unknown[];
  restorableMark?: number;
}): Promise<void> {
  const digest = crypto.createHash('sha256').update(JSON.stringify(resume.history)).digest('hex').slice(0, 16);
  const mark = resume.restorableMark;
  await agreeAcrossRanks(
    [
      ['the epoch the fit resumes at', String(resume.startEpoch)],
      ['what it resumes from', resume.resumed ? 'a checkpoint' : 'nothing (it starts over)'],
      ["the resumed checkpoint's history", `sha256 ${digest}`],
      ['the best state a callback marked', mark === undefined ? 'none' : `epoch ${mark}`],
    ],
    'resumed checkpoints',
  );
}

const listed = (ranks: number[]) => `rank${ranks.length > 1 ? 's' : ''} ${ranks.join(', ')}`;

/** The ranks that gave `wanted` in a gather. */
const ranksWith = (codes: number[], wanted: number) => codes.flatMap((value, r) => (value === wanted ? [r] : []));

const theirErrors = (ranks: number[]) => (ranks.length > 1 ? 'their errors say why' : 'its error says why');

/**
 * Collective: whether each rank could do its own part of a step (`what`). A rank that failed throws its own error
 * (the caller's); the others throw one saying who failed (`failures`), so that every rank ends at once.
 */
async function shareOwnFailure(
  failed: boolean,
  rank: number,
  what: string,
  failures: (failing: number[]) => string,
): Promise<void> {
  const failing = ranksWith(await gatherAcrossRanks(failed ? 1 : 0, `sharing whether every rank could ${what}`), 1);
  if (failed || failing.length === 0) return;
  throw new PaceDistributedError(
    `rank ${rank}: ${failures(failing)} (${theirErrors(failing)}); the fit stops on every rank`,
  );
}

/**
 * Collective, before anything else of a data-parallel fit with a run folder: whether rank 0 took the folder's
 * lock and every other rank could open it (a resume's folder missing on its machine), so that a refused fit ends
 * on every rank at once, naming who failed, instead of leaving the others waiting in the fit's first collective.
 * The failed ranks throw their own errors.
 */
export async function agreeOnRunFolder(failed: boolean, rank: number, dir: string): Promise<void> {
  await shareOwnFailure(failed, rank, `open the run folder ${dir}`, (failing) =>
    [
      ...(failing[0] === 0 ? [`rank 0 could not hold the run folder ${dir}`] : []),
      ...(failing.some((r) => r > 0) ? [`${listed(failing.filter((r) => r > 0))} could not open its run folder`] : []),
    ].join('; '),
  );
}

/**
 * Collective, once each rank has prepared its part of a fit with a run folder (rank 0 tidying it and checking it
 * holds no earlier run, every rank reading the checkpoint it resumes from): a rank that failed ends every rank's
 * fit at once, naming it, instead of leaving the others waiting in the next collective until the group's timeout.
 * The failed rank throws its own error.
 */
export async function agreeOnPreparation(failed: boolean, rank: number, what: string): Promise<void> {
  await shareOwnFailure(failed, rank, what, (failing) => `${listed(failing)} could not ${what}`);
}

/** What failed on a rank in a phase: one of its callbacks, or its own work since the last phase (see fit). */
export type Failed = 'a callback' | 'its own work';

/** What a rank did in one phase of a fit. */
export interface PhaseOutcome {
  /** What failed (this rank then rethrows its error). */
  failed?: Failed;
  /** The reason of a stop a callback asked for. */
  stopReason?: string;
}

/**
 * What a rank says in the gathers of a phase: how it ended the phase, or (`markBest`) that one of its callbacks
 * asks for the collective checkpoint `markBest` takes. Both go through one gather of one shape, so a rank whose
 * callbacks went another way than the others' (one failed, or called markBest where the others did not) meets
 * them in the same gather and every rank learns it, where two collectives of different shapes would abort the
 * process inside Gloo.
 */
const CODES = { none: 0, stop: 1, 'a callback': 2, 'its own work': 3, markBest: 4 } as const;

/** Why the ranks stop, from what each said; undefined when none failed. */
function failuresIn(codes: number[], phase: string): string | undefined {
  const callbackFailed = ranksWith(codes, CODES['a callback']);
  const ownFailed = ranksWith(codes, CODES['its own work']);
  const failures = [
    ...(callbackFailed.length > 0 ? [`a callback failed on ${listed(callbackFailed)} ${phase}`] : []),
    ...(ownFailed.length > 0
      ? [
          `${listed(ownFailed)} could not write its run folder or read its checkpoints ${phase.replace(/^in /, 'before ')}`,
        ]
      : []),
  ];
  if (failures.length === 0) return undefined;
  return `${failures.join('; ')} (${theirErrors([...callbackFailed, ...ownFailed])})`;
}

/** The message of ranks whose callbacks did not all ask for markBest at this point. */
function unevenMarks(codes: number[], phase: string): string {
  const marking = ranksWith(codes, CODES.markBest);
  const others = codes.flatMap((value, r) => (value !== CODES.markBest ? [r] : []));
  return (
    `a callback called markBest on ${listed(marking)} ${phase} where ${listed(others)} did not ` +
    '(callbacks must make the same calls on every rank)'
  );
}

/**
 * Collective, after each phase of a data-parallel fit that runs callbacks (onTrainBegin; each epoch's
 * onEpochBegin, its steps with their onBatchEnd calls, its onEpochEnd; onTrainEnd): a callback that failed on one
 * rank, or a rank's own work since the last phase (rank 0 writing the run folder's checkpoints and metrics, a rank
 * reading its mark of the best epoch), fails the fit on every rank, naming the rank and the phase; a stop asked on
 * some ranks (a time budget each checks for itself) stops every rank. Alone, a rank leaving would strand the others
 * in their next collective until the group's timeout, whose error blames a crash. Resolves to the stop reason this
 * rank records.
 */
export async function agreeOnPhase(here: PhaseOutcome, rank: number, phase: string): Promise<string | undefined> {
  const code = CODES[here.failed ?? (here.stopReason !== undefined ? 'stop' : 'none')];
  const codes = await gatherAcrossRanks(code, `sharing what the callbacks did ${phase}`);
  if (here.failed !== undefined) return here.stopReason; // this rank throws its own error
  const failed = failuresIn(codes, phase);
  const why = failed ?? (codes.includes(CODES.markBest) ? unevenMarks(codes, phase) : undefined);
  if (why !== undefined) throw new PaceDistributedError(`rank ${rank}: ${why}; the fit stops on every rank`);
  const stopping = ranksWith(codes, CODES.stop);
  return here.stopReason ?? (stopping.length > 0 ? `stopped by a callback on ${listed(stopping)}` : undefined);
}

/**
 * Collective, before the checkpoint a callback's `markBest` takes (itself collective): every rank must be asking
 * for it at this point of the phase. A rank that ended the phase instead (a callback failed there, or asked for
 * nothing) is met in this gather: every rank then stops with an error naming what differed.
 */
export async function agreeOnMarkBest(rank: number, phase: string): Promise<void> {
  const codes = await gatherAcrossRanks(CODES.markBest, `sharing the callbacks' markBest ${phase}`);
  if (codes.every((value) => value === CODES.markBest)) return;
  throw new PaceDistributedError(
    `rank ${rank}: ${failuresIn(codes, phase) ?? unevenMarks(codes, phase)}; the fit stops on every rank`,
  );
}
