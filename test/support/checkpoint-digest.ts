import zlib from 'node:zlib';

import { disposeTensors, loadTensors, saveTensors, tensor, type TensorRecord } from '../../lib';

/**
 * The digest of a training checkpoint, written here from its definition (native/core/io/checkpoint.h) with
 * Node's own CRC-32, independently of the native code: CRC-32 over the metadata entries in key order (each key
 * and value as a little-endian 64-bit length and its bytes), then over the tensors in name order (name, dtype,
 * shape as "d0,d1,...," and the raw bytes).
 */
export function checkpointDigest(tensors: TensorRecord, metadata: Record<string, string>): string {
  let crc = 0;
  const field = (text: string | Buffer) => {
    const bytes = typeof text === 'string' ? Buffer.from(text, 'utf8') : text;
    const length = Buffer.alloc(8);
    length.writeBigUInt64LE(BigInt(bytes.length));
    crc = zlib.crc32(bytes, zlib.crc32(length, crc));
  };
  for (const key of Object.keys(metadata).sort()) {
    if (key === 'pace.digest') continue;
    field(key);
    field(metadata[key]);
  }
  const atenNames: Record<string, string> = {
    float32: 'Float',
    float64: 'Double',
    float16: 'Half',
    bfloat16: 'BFloat16',
    int64: 'Long',
    int32: 'Int',
    int16: 'Short',
    int8: 'Char',
    uint8: 'Byte',
    bool: 'Bool',
  };
  for (const name of Object.keys(tensors).sort()) {
    const t = tensors[name];
    field(name);
    field(atenNames[t.dtype]);
    field(t.shape.map((d) => `${d},`).join(''));
    const data = t.data();
    crc = zlib.crc32(Buffer.from(data.buffer, data.byteOffset, data.byteLength), crc);
  }
  return `crc32:${crc.toString(16).padStart(8, '0')}`;
}

/** Saves tensors and metadata as a checkpoint with a correct digest (for tests that edit checkpoints on purpose). */
export async function saveCheckpointWithDigest(
  file: string,
  tensors: TensorRecord,
  metadata: Record<string, string>,
): Promise<void> {
  const { 'pace.digest': _old, ...rest } = metadata;
  void _old;
  await saveTensors(file, tensors, { metadata: { ...rest, 'pace.digest': checkpointDigest(tensors, rest) } });
}

/**
 * Fills one AdamW second moment of a training checkpoint with +∞, the digest recomputed: a state whose updates
 * (and losses) stay finite, found out only when it is checked. Returns the tensor's name.
 */
export async function withInfiniteSecondMoment(file: string): Promise<string> {
  const { tensors, metadata } = await loadTensors(file);
  const name = Object.keys(tensors).find((key) => key.endsWith('.exp_avg_sq'))!;
  const { shape } = tensors[name];
  const values = tensors[name].toFloat32Array().fill(Number.POSITIVE_INFINITY);
  tensors[name].dispose();
  tensors[name] = tensor(values, shape);
  await saveCheckpointWithDigest(file, tensors, metadata ?? {});
  disposeTensors(tensors);
  return name;
}
