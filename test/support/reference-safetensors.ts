// An independent safetensors reader for the tests, written from the format's description (8-byte
// little-endian header length, JSON header, raw little-endian data) with Node's Buffer and JSON.parse,
// to check the native reader against.
import fs from 'node:fs';

export interface ReferenceTensor {
  dtype: string;
  shape: number[];
  bytes: Buffer;
}

export function readReferenceSafetensors(file: string): {
  names: string[];
  tensors: Map<string, ReferenceTensor>;
  metadata: Record<string, string> | undefined;
} {
  const buffer = fs.readFileSync(file);
  const headerLength = Number(buffer.readBigUInt64LE(0));
  const header = JSON.parse(buffer.subarray(8, 8 + headerLength).toString('utf8')) as Record<string, unknown>;
  const dataStart = 8 + headerLength;
  const tensors = new Map<string, ReferenceTensor>();
  const names: string[] = [];
  for (const [name, info] of Object.entries(header)) {
    if (name === '__metadata__') continue;
    const { dtype, shape, data_offsets } = info as { dtype: string; shape: number[]; data_offsets: [number, number] };
    names.push(name);
    tensors.set(name, {
      dtype,
      shape,
      bytes: buffer.subarray(dataStart + data_offsets[0], dataStart + data_offsets[1]),
    });
  }
  return { names, tensors, metadata: header.__metadata__ as Record<string, string> | undefined };
}

/** Builds safetensors bytes from a header object and a data section, for crafting bad files. */
export function craftSafetensors(header: unknown, data: Buffer = Buffer.alloc(0), headerLength?: number): Buffer {
  const json = Buffer.from(typeof header === 'string' ? header : JSON.stringify(header), 'utf8');
  const length = Buffer.alloc(8);
  length.writeBigUInt64LE(BigInt(headerLength ?? json.length));
  return Buffer.concat([length, json, data]);
}
