import fs from 'node:fs';

import { z } from 'zod';

import { withContext } from '../error-context';
import { PaceFileError, PaceNotFoundError } from '../errors';
import type { NativeTrainerHandle } from '../native';
import { readTensorHeader } from '../safetensors';
import type { EpochLogs } from './callbacks';
import type { RunFolder } from './run-folder';

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

/** The metadata every training checkpoint carries besides its digest (checked by the native loader). */
function checkpointMetadataSchema(epochs: number) {
  return z
    .object({
      epoch: z
        .string()
        .regex(/^-?\d+$/, 'must be an integer')
        .transform(Number)
        .pipe(
          z
            .number()
            .min(-1)
            .max(epochs - 1, `is past the last epoch of this run (${epochs - 1})`),
        ),
      history: z.string().transform((text, context) => {
        try {
          return JSON.parse(text) as unknown;
        } catch {
          context.addIssue({ code: 'custom', message: 'is not JSON' });
          return z.NEVER;
        }
      }),
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
}

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
 * Restores the trainer from a run folder's checkpoint, after checking the file's digest (native) and its
 * metadata against this run. A run killed before its first checkpoint starts over; a missing folder is an error.
 */
export async function resumeFrom(
  handle: NativeTrainerHandle,
  run: RunFolder,
  from: ResumeFrom,
  epochs: number,
): Promise<ResumePoint> {
  let file = fileOf(run, from);
  if (from === 'last' && !fs.existsSync(file) && fs.existsSync(run.previousCheckpoint)) {
    file = run.previousCheckpoint; // killed between keeping the previous checkpoint and writing the new one
  }
  if (!fs.existsSync(file)) {
    if (from === 'last') return { startEpoch: 0, history: [] };
    throw new PaceNotFoundError(`cannot resume from ${file}: there is no such checkpoint`);
  }
  try {
    const header = await readTensorHeader(file);
    const parsed = checkpointMetadataSchema(epochs).safeParse(header.metadata ?? {});
    if (!parsed.success) {
      const issue = parsed.error.issues[0];
      throw new PaceFileError(`its metadata field '${issue.path.join('.') || 'epoch'}' ${issue.message}`);
    }
    await handle.loadState(file);
    return { startEpoch: parsed.data.epoch + 1, history: parsed.data.history as EpochLogs[], file };
  } catch (error) {
    const reason = (error as Error).message.replace(/^training checkpoint '[^']*' /, 'it ');
    throw withContext(error, `cannot resume from ${file}: ${reason}.${await alternatives(run, from)}`);
  }
}

/** Writes the run's last checkpoint, keeping the one it replaces as `previous.safetensors` (a hard link). */
export async function saveLastCheckpoint(
  handle: NativeTrainerHandle,
  run: RunFolder,
  metadata: Record<string, string>,
): Promise<void> {
  if (fs.existsSync(run.lastCheckpoint)) {
    const temp = `${run.previousCheckpoint}.tmp-${process.pid}`;
    fs.rmSync(temp, { force: true });
    fs.linkSync(run.lastCheckpoint, temp);
    fs.renameSync(temp, run.previousCheckpoint);
  }
  await handle.saveState(run.lastCheckpoint, metadata);
}
