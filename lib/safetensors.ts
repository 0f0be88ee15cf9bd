import { z } from 'zod';

import type { DType } from './dtype';
import { PaceFileError, PaceOptionError, PaceStateError } from './errors';
import { nativeAddon } from './native';
import { FilePathSchema, parseOptions } from './options';
import { handleOf, Tensor } from './tensor';

/** Named tensors, as a safetensors file holds them. */
export type TensorRecord = Record<string, Tensor>;

/** The string-to-string `__metadata__` of a safetensors file. */
export type TensorMetadata = Record<string, string>;

/** What {@link loadTensors} returns. */
export interface TensorFile {
  /** Every tensor of the file, on the CPU, in file order. */
  tensors: TensorRecord;
  /** The file's `__metadata__`, or null when it has none. */
  metadata: TensorMetadata | null;
}

/** One tensor's description in a safetensors header. */
export interface TensorHeaderEntry {
  name: string;
  dtype: DType;
  shape: number[];
  /** Byte range in the data section, as the file states it. */
  dataOffsets: [number, number];
}

/** What {@link readTensorHeader} returns. */
export interface TensorHeader {
  entries: TensorHeaderEntry[];
  metadata: TensorMetadata | null;
  /** File offset where the data section starts. */
  dataStart: number;
  fileSize: number;
}

const PathSchema = FilePathSchema;
const SaveOptionsSchema = z
  .object({
    /** Written as the file's `__metadata__` (safetensors allows only string values). */
    metadata: z.record(z.string(), z.string()).optional(),
  })
  .strict();

/** Options of {@link saveTensors}. */
export type SaveTensorsOptions = z.input<typeof SaveOptionsSchema>;

/**
 * Reads a safetensors file into CPU tensors, off the JavaScript thread. The header is validated in full
 * first (dtypes, shapes, offsets against the file size); a malformed or truncated file is rejected with
 * an error naming the file and the problem. Pickle-based checkpoints (`.pt`, `.pth`) are refused, never opened.
 */
export async function loadTensors(path: string): Promise<TensorFile> {
  const file = await nativeAddon().loadSafetensors(parseOptions(PathSchema, path, 'path'));
  const tensors: TensorRecord = Object.create(null) as TensorRecord;
  file.names.forEach((name, i) => {
    tensors[name] = new Tensor(file.tensors[i]);
  });
  return { tensors, metadata: file.metadata };
}

/** Reads and validates only the header of a safetensors file: names, dtypes, shapes and metadata. */
export async function readTensorHeader(path: string): Promise<TensorHeader> {
  return nativeAddon().readSafetensorsHeader(parseOptions(PathSchema, path, 'path'));
}

/**
 * {@link readTensorHeader} on the calling thread: for the checks a model makes of a file before it queues the job
 * that loads it (a model's jobs run in the order they were asked for). A header is a few kilobytes to megabytes.
 * @internal
 */
export function readTensorHeaderSync(path: string): TensorHeader {
  return nativeAddon().readSafetensorsHeaderSync(parseOptions(PathSchema, path, 'path'));
}

/**
 * Writes tensors (from any device) to a safetensors file, off the JavaScript thread. The file is written
 * to a temporary name, fsynced and renamed, so a crash never leaves a half-written file under `path`.
 * Tensors are stored in name order, which makes the output byte-identical for the same inputs.
 */
export async function saveTensors(
  path: string,
  tensors: TensorRecord | Map<string, Tensor>,
  options: SaveTensorsOptions = {},
): Promise<void> {
  const target = parseOptions(PathSchema, path, 'path');
  parseOptions(SaveOptionsSchema, options, 'options');
  // The caller's object, checked (zod's copy assigns each key, and an assigned "__proto__" keeps nothing)
  const metadata = options.metadata;
  const entries = tensors instanceof Map ? [...tensors.entries()] : Object.entries(tensors);
  const names = entries.map(([name]) => name);
  const nativeHandles = entries.map(([name, value]) => {
    if (!(value instanceof Tensor)) throw new PaceOptionError(`tensors['${name}'] is not a Tensor`);
    if (value.disposed) throw new PaceStateError(`tensors['${name}'] was disposed`);
    return handleOf(value);
  });
  await nativeAddon().saveSafetensors(target, names, nativeHandles, metadata ?? null);
}

/** Disposes every tensor of a record (or of a {@link TensorFile}'s `tensors`). */
export function disposeTensors(tensors: TensorRecord | Map<string, Tensor>): void {
  for (const value of tensors instanceof Map ? tensors.values() : Object.values(tensors)) value.dispose();
}

/** A metadata value (`key`) read as JSON; a PaceFileError `<where>: its '<key>' metadata is not JSON` otherwise. */
export function metadataJson(recorded: string, where: string, key: string): unknown {
  try {
    return JSON.parse(recorded);
  } catch {
    throw new PaceFileError(`${where}: its '${key}' metadata is not JSON`);
  }
}

/**
 * A metadata value (`key`) read as JSON and checked against `schema`; a PaceFileError naming `where`, the key and the
 * first problem (`... is not <kind> (<field>: <message>)`) otherwise.
 */
export function checkedMetadataJson<T>(
  recorded: string,
  schema: z.ZodType<T>,
  where: string,
  key: string,
  kind: string,
): T {
  const checked = schema.safeParse(metadataJson(recorded, where, key));
  if (!checked.success) {
    const issue = checked.error.issues[0];
    throw new PaceFileError(
      `${where}: its '${key}' metadata is not ${kind} (${issue.path.join('.') || 'the value'}: ${issue.message})`,
    );
  }
  return checked.data;
}
