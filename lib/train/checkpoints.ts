import fs from 'node:fs';

import { z } from 'zod';

import { withContext } from '../error-context';
import { PaceFileError, PaceNotFoundError, PaceOptionError, PaceStateError } from '../errors';
import { nativeAddon, type NativeTrainerHandle } from '../native';
import { readTensorHeader } from '../safetensors';
import type { EpochLogs } from './callbacks';
import { linkOrCopyExclusive, syncDirectory, writeFailure } from '../files';
import { foreignEntriesIn, runFilesIn, type RunFolder } from './run-folder';
import { identityDifferences, RUN_IDENTITY_KEY, runIdentityOf, type RunIdentity } from './run-identity';

/** Which checkpoint of a run folder a resumed fit starts from. */
export const ResumeFromSchema = z.enum(['last', 'previous', 'best']);
export type ResumeFrom = z.infer<typeof ResumeFromSchema>;

/** Where a resumed fit starts: the first epoch to run and the history before it. */
export interface ResumePoint {
  startEpoch: number;
  history: EpochLogs[];
  /** The checkpoint it was restored from, or undefined when the run had written none (it starts over). */
  file?: string;
}

const jsonText = z.string().transform((text, context) => {
  try {
    return JSON.parse(text) as unknown;
  } catch {
    context.addIssue({ code: 'custom', message: 'is not JSON' });
    return z.NEVER;
  }
});

/** Refuses to continue a run whose identity differs from this one's, naming the first differences. */
function checkSameRun(saved: unknown, identity: RunIdentity, what: string): void {
  const differences = identityDifferences(saved, identity);
  if (differences.length === 0) return;
  const shown =
    differences.slice(0, 4).join('; ') + (differences.length > 4 ? `; and ${differences.length - 4} more` : '');
  throw new PaceStateError(
    `${what} belongs to another run (${shown}): resume with the model, trainer, fit options and training set it was made with, or start a new run folder`,
  );
}

/**
 * A resume from a folder without a last or previous checkpoint starts over only where a run was killed before
 * its first checkpoint: the folder then holds none of a run's results, nothing a run would not have written
 * (config.json, and a sweep's run.json and fit.log), and a config.json only if it is this run's.
 */
function checkStartOver(run: RunFolder, identity: RunIdentity): void {
  const results = runFilesIn(run.dir);
  if (results.length > 0) {
    const hint = results.includes('best.safetensors') ? " (resumeFrom: 'best' continues from its best checkpoint)" : '';
    throw new PaceStateError(
      `cannot resume ${run.dir}: it holds no last or previous checkpoint, but an earlier run's ${results.join(', ')}${hint}`,
    );
  }
  const foreign = foreignEntriesIn(run.dir);
  if (foreign.length > 0) {
    throw new PaceStateError(
      `cannot resume ${run.dir}: it holds no checkpoint, and files a run does not write (${foreign.slice(0, 5).join(', ')}): is it a run folder?`,
    );
  }
  const config = run.readConfig();
  if (config) checkSameRun(runIdentityOf(config), identity, `the run folder ${run.dir}`);
}

/** The metadata every training checkpoint carries besides its digest (checked by the native loader). */
const CheckpointMetadataSchema = z
  .object({
    epoch: z
      .string()
      .regex(/^-?\d+$/, 'must be an integer')
      .transform(Number)
      .pipe(z.number().min(-1)),
    history: jsonText,
    // Checkpoints written before runs carried their identity have none, and are not compared.
    [RUN_IDENTITY_KEY]: jsonText.optional(),
  })
  .superRefine((value, context) => {
    const history = value.history;
    const epochsInOrder =
      Array.isArray(history) &&
      history.length === value.epoch + 1 &&
      history.every((logs, i) => typeof logs === 'object' && logs !== null && (logs as EpochLogs).epoch === i);
    if (!epochsInOrder) {
      context.addIssue({
        code: 'custom',
        path: ['history'],
        message: `must list epochs 0 to ${value.epoch} in order`,
      });
    }
  });

function fileOf(run: RunFolder, from: ResumeFrom): string {
  return from === 'best' ? run.bestCheckpoint : from === 'previous' ? run.previousCheckpoint : run.lastCheckpoint;
}

/** What else a user can resume from, for an error message. */
async function alternatives(run: RunFolder, except: ResumeFrom): Promise<string> {
  const offers: string[] = [];
  for (const from of ['previous', 'best'] as const) {
    if (from === except || !fs.existsSync(fileOf(run, from))) continue;
    try {
      const epoch = (await readTensorHeader(fileOf(run, from))).metadata?.epoch;
      offers.push(`resumeFrom: '${from}' (epoch ${epoch})`);
    } catch {
      // unreadable too: not an offer
    }
  }
  return offers.length > 0 ? ` Its other checkpoints can be resumed with ${offers.join(' or ')}.` : '';
}

/**
 * Whether a checkpoint is there. A symbolic link that leads to no file (dangling, or a loop) is an error, not an
 * absence: taken for one, a resume would quietly continue from an older checkpoint or start over.
 */
function checkpointThere(file: string): boolean {
  if (fs.existsSync(file)) return true;
  if (fs.lstatSync(file, { throwIfNoEntry: false }) === undefined) return false;
  throw new PaceFileError(
    `cannot resume from ${file}: it is a symbolic link that leads to no file (its target is missing, or the links ` +
      'loop): restore its target, or remove the link to resume without it',
  );
}

/**
 * Restores the trainer from a run folder's checkpoint, after checking the file's digest (native) and its
 * metadata against this run. A run killed before its first checkpoint starts over; a missing folder is an error.
 */
export async function resumeFrom(
  handle: NativeTrainerHandle,
  run: RunFolder,
  from: ResumeFrom,
  epochs: number,
  identity: RunIdentity,
): Promise<ResumePoint> {
  let file = fileOf(run, from);
  let tried = from;
  if (from === 'last' && !checkpointThere(file) && checkpointThere(run.previousCheckpoint)) {
    // `last` removed by hand (the writer replaces it by a rename, and keeps `previous` as a link first)
    file = run.previousCheckpoint;
    tried = 'previous';
  }
  if (!checkpointThere(file)) {
    if (from === 'last') {
      checkStartOver(run, identity);
      return { startEpoch: 0, history: [] };
    }
    throw new PaceNotFoundError(`cannot resume from ${file}: there is no such checkpoint`);
  }
  const refused = async (error: unknown) => {
    const reason = (error as Error).message.replace(/^training checkpoint '[^']*' /, 'it ');
    // Every checkpoint of a run was written by the same number of processes: none is an alternative then.
    const others = /written by \d+ process/.test(reason) ? '' : await alternatives(run, tried);
    return withContext(error, `cannot resume from ${file}: ${reason}.${others}`);
  };
  // A field that no longer matches this run may be a damaged byte: the file's digest decides which it is, so that a
  // damaged checkpoint is reported as such, with the run's other checkpoints, not as another run's.
  const damagedOr = async (mismatch: unknown): Promise<unknown> => {
    try {
      await nativeAddon().checkCheckpoint(file);
    } catch (error) {
      return refused(error);
    }
    return mismatch;
  };
  let metadata: z.infer<typeof CheckpointMetadataSchema>;
  try {
    const header = await readTensorHeader(file);
    const parsed = CheckpointMetadataSchema.safeParse(header.metadata ?? {});
    if (!parsed.success) {
      const issue = parsed.error.issues[0];
      throw new PaceFileError(`its metadata field '${issue.path.join('.') || 'epoch'}' ${issue.message}`);
    }
    metadata = parsed.data;
  } catch (error) {
    throw await refused(error);
  }
  try {
    // Another run's checkpoint: its folder's other checkpoints are that run's too, so none is offered.
    if (metadata[RUN_IDENTITY_KEY] !== undefined)
      checkSameRun(metadata[RUN_IDENTITY_KEY], identity, `the checkpoint ${file}`);
    // Not a fault of the file: no other checkpoint is offered, as resuming an earlier one would overwrite the later
    // epochs' checkpoints and metrics.
    if (metadata.epoch + 1 > epochs) {
      throw new PaceOptionError(
        `cannot resume from ${file} with epochs: ${epochs}: the run has already trained ${metadata.epoch + 1} ` +
          `epochs; give epochs of at least ${metadata.epoch + 1} (more trains it further), or start a new run folder`,
      );
    }
  } catch (mismatch) {
    throw await damagedOr(mismatch);
  }
  try {
    await handle.loadState(file);
  } catch (error) {
    throw await refused(error);
  }
  return { startEpoch: metadata.epoch + 1, history: metadata.history as EpochLogs[], file };
}

/**
 * Whether the run's best checkpoint is of an epoch a fit resumed at `startEpoch` runs again (resumed from `previous`
 * or an earlier `best`): it then belongs to the continuation the resume abandons, and goes with it. Unreadable, it
 * is left for a resume from it to refuse with its reason.
 */
export async function bestIsAbandoned(run: RunFolder, startEpoch: number): Promise<boolean> {
  if (!fs.existsSync(run.bestCheckpoint)) return false;
  try {
    const epoch = Number((await readTensorHeader(run.bestCheckpoint)).metadata?.epoch);
    return Number.isInteger(epoch) && epoch >= startEpoch;
  } catch {
    return false;
  }
}

/** Removes a checkpoint of an abandoned continuation, durably (a kill after the next writes must not find it). */
export function removeCheckpoint(run: RunFolder, file: string): void {
  try {
    fs.rmSync(file, { force: true });
    syncDirectory(run.dir);
  } catch (error) {
    throw writeFailure(error, file);
  }
}

/**
 * Keeps the checkpoint the run continues from as `previous.safetensors` (a hard link), before the next one is
 * written: its last, or, for the first write of a fit resumed from another checkpoint, that one. A `last` the
 * resume passed over (refused as corrupt, say) must not replace the good `previous`; and this comes before `best`
 * is rewritten, which a resume from `best` continues from.
 */
export function keepPrevious(run: RunFolder, continuesFrom: string = run.lastCheckpoint): void {
  if (continuesFrom === run.previousCheckpoint || !fs.existsSync(continuesFrom)) return;
  const temp = `${run.previousCheckpoint}.tmp-${process.pid}`;
  try {
    fs.rmSync(temp, { force: true });
    linkOrCopyExclusive(continuesFrom, temp);
    fs.renameSync(temp, run.previousCheckpoint);
    syncDirectory(run.dir); // the kept checkpoint is durable before the last one is replaced
  } catch (error) {
    try {
      fs.rmSync(temp, { force: true });
    } catch {
      // the write's own failure is the one to report
    }
    // Removed since it was looked for (by hand, say): nothing to keep, as if it had not been there.
    if ((error as NodeJS.ErrnoException).code === 'ENOENT' && !fs.existsSync(continuesFrom)) return;
    throw writeFailure(error, run.previousCheckpoint);
  }
}
