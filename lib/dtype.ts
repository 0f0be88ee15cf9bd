import { z } from 'zod';

/** Element types a {@link Tensor} can have. The `float8_*` and `uint16/32/64` types need libtorch >= 2.1 / 2.3. */
export const DTypeSchema = z.enum([
  'float32',
  'float64',
  'float16',
  'bfloat16',
  'int64',
  'int32',
  'int16',
  'int8',
  'uint8',
  'bool',
  'float8_e4m3fn',
  'float8_e5m2',
  'uint16',
  'uint32',
  'uint64',
]);

/** The name of a tensor element type, as in PyTorch without the `torch.` prefix. */
export type DType = z.infer<typeof DTypeSchema>;

/** Every JavaScript typed array a tensor can be created from or read into. */
export type TypedArray =
  | Float32Array
  | Float64Array
  | Int32Array
  | Int16Array
  | Int8Array
  | Uint8Array
  | Uint8ClampedArray
  | Uint16Array
  | Uint32Array
  | BigInt64Array
  | BigUint64Array;

type TypedArrayConstructor = {
  new (length: number): TypedArray;
  new (buffer: ArrayBuffer, byteOffset?: number, length?: number): TypedArray;
  readonly BYTES_PER_ELEMENT: number;
};

/**
 * The typed array that holds a dtype's raw elements. Half-precision and float8 types have no JavaScript
 * number type: their raw bits are exposed (Uint16Array, Uint8Array); `toFloat32Array()` converts values.
 */
export const storageArrayOf: Record<DType, TypedArrayConstructor> = {
  float32: Float32Array,
  float64: Float64Array,
  float16: Uint16Array,
  bfloat16: Uint16Array,
  int64: BigInt64Array,
  int32: Int32Array,
  int16: Int16Array,
  int8: Int8Array,
  uint8: Uint8Array,
  bool: Uint8Array,
  float8_e4m3fn: Uint8Array,
  float8_e5m2: Uint8Array,
  uint16: Uint16Array,
  uint32: Uint32Array,
  uint64: BigUint64Array,
};

/** Bytes per element of each dtype. */
export function itemSize(dtype: DType): number {
  return storageArrayOf[dtype].BYTES_PER_ELEMENT;
}

const dtypeOfTag: Partial<Record<string, DType>> = {
  Float32Array: 'float32',
  Float64Array: 'float64',
  Int32Array: 'int32',
  Int16Array: 'int16',
  Int8Array: 'int8',
  Uint8Array: 'uint8',
  Uint8ClampedArray: 'uint8',
  BigInt64Array: 'int64',
  BigUint64Array: 'uint64',
  Uint32Array: 'uint32',
};

/**
 * The dtype a typed array's values naturally have (a Uint16Array has none: it needs an explicit dtype).
 * Looks at the array's tag, not its constructor, so arrays from other realms (vm contexts) work too.
 */
export function dtypeOfArray(data: TypedArray): DType | undefined {
  return dtypeOfTag[arrayTag(data)];
}

/** `'Float32Array'`, `'Uint16Array'`, ... for any typed array, from any realm. */
export function arrayTag(data: TypedArray): string {
  return Object.prototype.toString.call(data).slice(8, -1);
}
