import { types } from 'node:util';

import { z } from 'zod';

import { arrayTag, DTypeSchema, dtypeOfArray, itemSize, storageArrayOf, type DType, type TypedArray } from './dtype';
import { PaceInputError, PaceOptionError, PaceShapeError, PaceUnsupportedError } from './errors';
import { nativeAddon, type NativeRowsWriter, type NativeTensorHandle } from './native';
import { describeValue, parseOptions } from './options';

/** Nested arrays of numbers, as `tensor([[1, 2], [3, 4]])` takes them. */
export type NestedNumbers = number | readonly NestedNumbers[];

/** What {@link tensor} accepts as data. */
export type TensorData = TypedArray | ArrayBuffer | readonly NestedNumbers[];

const TensorOptionsSchema = z
  .object({
    /** Element type. Defaults to the typed array's own type, or float32 for plain numbers. */
    dtype: DTypeSchema.optional(),
    /** Device to place the tensor on after creation (`'cpu'`, `'cuda'`, `'cuda:1'`). Defaults to `'cpu'`. */
    device: z.string().min(1).optional(),
  })
  .strict();

/** Options of {@link tensor}. */
export type TensorOptions = z.input<typeof TensorOptionsSchema>;

const handles = new WeakMap<Tensor, NativeTensorHandle>();

/**
 * An n-dimensional array held by libtorch (on the CPU or a GPU). JavaScript holds only a handle:
 * call {@link Tensor.dispose} (or declare it with `using`) to free the memory at once; otherwise the
 * garbage collector frees it, and it knows how much native memory each tensor holds.
 */
export class Tensor implements Disposable {
  /** Not for users: tensors are made by {@link tensor}, {@link loadTensors} and the model APIs. */
  constructor(handle: NativeTensorHandle) {
    if (typeof handle !== 'object' || handle === null) {
      throw new PaceOptionError('new Tensor(): tensors are made by tensor(), loadTensors() and the model APIs');
    }
    handles.set(this, handle);
  }

  /** Dimensions, outermost first. */
  get shape(): number[] {
    return handleOf(this).shape;
  }

  /** Element type. */
  get dtype(): DType {
    return handleOf(this).dtype;
  }

  /** Device the data lives on: `'cpu'`, `'cuda:0'`, ... */
  get device(): string {
    return handleOf(this).device;
  }

  /** Number of elements. */
  get size(): number {
    return handleOf(this).numel;
  }

  /** Bytes of the elements (not of any larger storage this tensor views). */
  get byteLength(): number {
    return handleOf(this).byteLength;
  }

  /** True once {@link Tensor.dispose} has run; every other member then throws. */
  get disposed(): boolean {
    return handleOf(this).disposed;
  }

  /** A copy of the elements in their own storage type (raw bits for float16/bfloat16/float8). */
  data(): TypedArray {
    return this.copyAs(this.dtype);
  }

  /**
   * The elements without a copy where libtorch allows it safely (a contiguous CPU tensor, a runtime that
   * permits external buffers); otherwise a copy. Writes to a shared view change the tensor; the view
   * keeps the memory alive even after `dispose()`, in this thread: to hand the elements to another thread, post a
   * copy ({@link Tensor.data}), never the view's buffer (`ArrayBuffer.prototype.transfer` on newer Node moves it
   * out of the keep-alive's reach).
   */
  view(): TypedArray {
    const buffer = handleOf(this).viewData();
    if (buffer === undefined) return this.data();
    const StorageArray = storageArrayOf[this.dtype];
    return new StorageArray(buffer, 0, buffer.byteLength / StorageArray.BYTES_PER_ELEMENT);
  }

  /** The values converted to float32. */
  toFloat32Array(): Float32Array {
    return this.copyAs('float32') as Float32Array;
  }

  /** The values converted to float64. */
  toFloat64Array(): Float64Array {
    return this.copyAs('float64') as Float64Array;
  }

  /** The values converted to int32 (truncating floats toward zero, as a libtorch cast does). */
  toInt32Array(): Int32Array {
    return this.copyAs('int32') as Int32Array;
  }

  /** The values converted to int64. */
  toBigInt64Array(): BigInt64Array {
    return this.copyAs('int64') as BigInt64Array;
  }

  /** The values converted to uint8 (bool becomes 0/1). */
  toUint8Array(): Uint8Array {
    return this.copyAs('uint8') as Uint8Array;
  }

  /** The values as nested JavaScript arrays of numbers (int64 as numbers: exact up to 2^53). */
  toArray(): NestedNumbers[] | number {
    const flat = Array.from(this.toFloat64Array());
    const shape = this.shape;
    if (shape.length === 0) return flat[0];
    const build = (dim: number, offset: number, stride: number): NestedNumbers[] => {
      const inner = stride / shape[dim];
      return Array.from({ length: shape[dim] }, (_, i) =>
        dim === shape.length - 1 ? flat[offset + i] : build(dim + 1, offset + i * inner, inner),
      );
    };
    return build(0, 0, flat.length);
  }

  /** This tensor on another device (`'cpu'`, `'cuda'`, `'cuda:1'`); the same data when already there. */
  to(device: string): Tensor {
    return new Tensor(handleOf(this).to(device));
  }

  /** A copy with another element type (a copy also when it is this tensor's own type). */
  cast(dtype: DType): Tensor {
    return new Tensor(handleOf(this).cast(parseOptions(DTypeSchema, dtype, 'dtype')));
  }

  /** A copy in its own memory. */
  clone(): Tensor {
    return new Tensor(handleOf(this).clone());
  }

  /** Frees the native memory now. Safe to call twice. */
  dispose(): void {
    handleOf(this).dispose();
  }

  [Symbol.dispose](): void {
    this.dispose();
  }

  toString(): string {
    const handle = handleOf(this);
    if (handle.disposed) return 'Tensor(disposed)';
    return `Tensor(${handle.dtype}[${handle.shape.join(',')}], ${handle.device})`;
  }

  /** A copy in an array of JavaScript's own (transferable to a worker, as any other). */
  private copyAs(dtype: DType): TypedArray {
    const handle = handleOf(this);
    const StorageArray = storageArrayOf[dtype];
    let copy: TypedArray;
    try {
      copy = new StorageArray(handle.numel);
    } catch (error) {
      // (by name: the typed array constructors may be of another realm than this module's, as under jest)
      if ((error as Error | undefined)?.name !== 'RangeError') throw error;
      throw new PaceUnsupportedError(
        `the tensor's ${handle.numel} elements could not be copied into one JavaScript typed array ` +
          `(${(error as Error).message})`,
      );
    }
    handle.copyInto(dtype, copy);
    return copy;
  }
}

/** @internal The native handle of a tensor, for the other modules of this package. */
export function handleOf(tensor: Tensor): NativeTensorHandle {
  const handle = tensor instanceof Tensor ? handles.get(tensor) : undefined;
  if (!handle) throw new PaceOptionError(`expected a Tensor, got ${describeValue(tensor)}`);
  return handle;
}

function checkShape(shape: unknown): number[] {
  if (!Array.isArray(shape))
    throw new PaceOptionError(`shape must be an array of dimensions, got ${describeValue(shape)}`);
  shape.forEach((dim: unknown, i) => {
    if (typeof dim !== 'number' || !Number.isSafeInteger(dim) || dim < 0) {
      throw new PaceOptionError(`shape[${i}] must be a non-negative integer, got ${String(dim)}`);
    }
  });
  // Whatever the order of the dimensions, and with a 0 among them too: libtorch counts sizes and strides in 64
  // bits, and a safetensors reader refuses such a shape (so a file written from it could not be read back).
  const counted = (shape as number[]).reduce((total, dim) => (dim === 0 ? total : total * BigInt(dim)), 1n);
  if (counted > 2n ** 63n - 1n) {
    throw new PaceShapeError(`shape [${shape.join(', ')}] has more elements than a tensor can count (2^63 - 1)`);
  }
  return shape as number[];
}

function product(shape: readonly number[]): number {
  return shape.reduce((total, dim) => total * dim, 1);
}

function flatten(data: readonly NestedNumbers[]): { values: number[]; shape: number[] } {
  const shape: number[] = [];
  for (let level: NestedNumbers = data; Array.isArray(level); level = (level as NestedNumbers[])[0]) {
    shape.push((level as NestedNumbers[]).length);
    if ((level as NestedNumbers[]).length === 0) break;
  }
  const values: number[] = [];
  const walk = (node: NestedNumbers, depth: number, where: string): void => {
    if (depth === shape.length) {
      if (typeof node !== 'number')
        throw new PaceInputError(`data${where} must be a number, got ${describeValue(node)}`);
      values.push(node);
      return;
    }
    if (!Array.isArray(node) || node.length !== shape[depth]) {
      throw new PaceShapeError(`data${where} must be an array of length ${shape[depth]} (the data is ragged)`);
    }
    for (let i = 0; i < node.length; i++) {
      if (!(i in node)) throw new PaceInputError(`data${where}[${i}] is a hole in a sparse array, not a number`);
      walk(node[i], depth + 1, `${where}[${i}]`);
    }
  };
  walk(data, 0, '');
  return { values, shape };
}

/** Dtypes whose values JavaScript numbers cannot be written as directly (they are stored as raw bits). */
function storedAsBits(dtype: DType): boolean {
  return dtype === 'float16' || dtype === 'bfloat16' || dtype.startsWith('float8');
}

/** The values each integer dtype holds: a number outside them would wrap or be cut when stored. */
const integerRanges: Partial<Record<DType, [number, number]>> = {
  int8: [-(2 ** 7), 2 ** 7 - 1],
  uint8: [0, 2 ** 8 - 1],
  int16: [-(2 ** 15), 2 ** 15 - 1],
  uint16: [0, 2 ** 16 - 1],
  int32: [-(2 ** 31), 2 ** 31 - 1],
  uint32: [0, 2 ** 32 - 1],
  int64: [-(2 ** 63), 2 ** 63], // 2^63 itself is out: checked below as a strict bound
  uint64: [0, 2 ** 64],
};

/**
 * Refuses values an integer dtype cannot hold (a fraction, NaN, one out of range), naming the first: nested
 * numbers and typed arrays converted to it alike (libtorch's cast would wrap or truncate them).
 */
function checkIntegers(values: ArrayLike<number | bigint>, dtype: DType): void {
  const range = integerRanges[dtype];
  if (!range) return;
  const [low, high] = range;
  const wide = dtype === 'int64' || dtype === 'uint64';
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    if (typeof v === 'number' && !Number.isInteger(v)) {
      throw new PaceInputError(`data[${i}] = ${v} is not an integer (dtype ${dtype})`);
    }
    const [from, to] = typeof v === 'bigint' ? [BigInt(low), BigInt(high)] : [low, high];
    if (v < from || (wide ? v >= to : v > to))
      throw new PaceInputError(`data[${i}] = ${v} is outside what ${dtype} holds`);
  }
}

function fromNumbers(values: number[], dtype: DType): TypedArray {
  checkIntegers(values, dtype);
  if (dtype === 'int64' || dtype === 'uint64') {
    return dtype === 'int64' ? BigInt64Array.from(values, BigInt) : BigUint64Array.from(values, BigInt);
  }
  if (dtype === 'bool') return Uint8Array.from(values, (v) => Number(v !== 0));
  const StorageArray = storageArrayOf[dtype] as unknown as { from(values: number[]): TypedArray };
  return StorageArray.from(values);
}

/**
 * Creates a CPU tensor from data (copied into libtorch-owned memory, so the array may be reused at once).
 *
 * - A typed array keeps its own dtype (`Float32Array` → float32, `BigInt64Array` → int64, `Uint8Array` → uint8 ...);
 *   `options.dtype` converts the values (`tensor(floats, shape, { dtype: 'bfloat16' })`); an integer dtype refuses a
 *   value it cannot hold, a fraction or NaN (a PaceInputError naming the element).
 * - A `Uint16Array` (with `dtype: 'float16' | 'bfloat16' | 'uint16'`), and an `ArrayBuffer` or a `Uint8Array`/`Buffer`
 *   with any other `dtype`, are taken as the raw little-endian bits of that dtype.
 * - Nested arrays of numbers give the shape themselves and default to float32.
 *
 * `shape` defaults to `[length]` for flat data; its product must equal the number of elements.
 */
export function tensor(data: TensorData, shape?: readonly number[], options: TensorOptions = {}): Tensor {
  const { dtype: requested, device } = parseOptions(TensorOptionsSchema, options, 'options');
  const givenShape = shape === undefined ? undefined : checkShape(shape);

  if (Array.isArray(data)) {
    const flat = flatten(data);
    return fromValues(flat.values, requested ?? 'float32', givenShape ?? flat.shape, device);
  }

  let array: TypedArray;
  if (types.isArrayBuffer(data)) {
    if (isDetached(data))
      throw new PaceInputError('data is a detached ArrayBuffer (transferred away): it has no bytes');
    array = new Uint8Array(data);
  } else if (types.isTypedArray(data)) {
    array = data as TypedArray;
    if (array.byteLength === 0 && types.isArrayBuffer(array.buffer) && isDetached(array.buffer)) {
      throw new PaceInputError(`data is a ${arrayTag(array)} whose buffer was detached (transferred away)`);
    }
  } else {
    throw new PaceOptionError(
      `data must be a typed array, an ArrayBuffer or an array of numbers, got ${describeValue(data)}`,
    );
  }

  const own = dtypeOfArray(array);
  if (arrayTag(array) === 'Uint16Array') {
    if (requested === undefined || itemSize(requested) !== 2) {
      throw new PaceOptionError("a Uint16Array needs options.dtype 'float16', 'bfloat16' or 'uint16' (its raw bits)");
    }
    return onDevice(createFrom(array, requested, givenShape, true), device);
  }
  if (own === 'uint8' && requested !== undefined && requested !== 'uint8') {
    return onDevice(createFrom(array, requested, givenShape, true), device);
  }
  if (own === 'uint64' && requested === 'int64') {
    // Exactly, as bigints: values past 2^53 keep every bit (libtorch before 2.3 has no uint64 to convert from).
    const values = array as BigUint64Array;
    const tooLarge = values.findIndex((v) => v >= 2n ** 63n);
    if (tooLarge >= 0) throw new PaceInputError(`data[${tooLarge}] = ${values[tooLarge]} is outside what int64 holds`);
    return onDevice(createFrom(BigInt64Array.from(values), 'int64', givenShape, false), device);
  }
  if (requested !== undefined && requested !== own && (own === 'uint32' || own === 'uint64')) {
    // Converted here, not by libtorch: before 2.3 it has no uint32 or uint64 to convert from.
    const values = Array.from(array as ArrayLike<number | bigint>, (v, i) => {
      if (typeof v === 'bigint' && v > BigInt(Number.MAX_SAFE_INTEGER)) {
        throw new PaceInputError(`data[${i}] = ${v} is too large to convert exactly (above 2^53)`);
      }
      return Number(v);
    });
    return fromValues(values, requested, givenShape ?? [values.length], device);
  }
  if (requested !== undefined && requested !== own) checkIntegers(array as ArrayLike<number | bigint>, requested);
  const created = createFrom(array, own ?? 'uint8', givenShape, false);
  return requested === undefined || requested === own
    ? onDevice(created, device)
    : withDtype(created, requested, device);
}

/** A tensor of `dtype` from JavaScript numbers (half-width floats written as float32, then converted). */
function fromValues(values: number[], dtype: DType, shape: number[], device: string | undefined): Tensor {
  const written = storedAsBits(dtype) ? 'float32' : dtype;
  const created = createFrom(fromNumbers(values, written), written, shape, false);
  return written === dtype ? onDevice(created, device) : withDtype(created, dtype, device);
}

/** Whether an ArrayBuffer was transferred away (a worker's postMessage, `transfer()`): it reads as empty. */
function isDetached(buffer: ArrayBuffer): boolean {
  try {
    new Uint8Array(buffer);
    return false;
  } catch {
    return true;
  }
}

/**
 * @internal A CPU tensor of `shape` from byte pieces laid one after another (the decoded images of a dataset,
 * say), without first joining them in one JavaScript buffer, which could not hold more than a few GiB.
 */
export function tensorFromPieces(pieces: readonly ArrayBufferView[], shape: readonly number[], dtype: DType): Tensor {
  return new Tensor(nativeAddon().createTensorFromPieces([...pieces], dtype, checkShape([...shape])));
}

/**
 * @internal A CPU tensor `[rows, ...rowShape]` written one row at a time as the rows arrive (images decoded in
 * parallel), so they are not all held in JavaScript buffers as well; `finish` keeps the given rows, in order.
 */
export class RowsTensorWriter implements Disposable {
  readonly #native: NativeRowsWriter;

  constructor(rows: number, rowShape: readonly number[], dtype: DType) {
    this.#native = new (nativeAddon().RowsWriter)(rows, checkShape([...rowShape]), dtype);
  }

  put(row: number, data: ArrayBufferView): void {
    this.#native.put(row, data);
  }

  /** The tensor of `keptRows` (increasing, each put), `[keptRows.length, ...rowShape]`; the writer is spent. */
  finish(keptRows: number[]): Tensor {
    return new Tensor(this.#native.finish(keptRows));
  }

  [Symbol.dispose](): void {
    this.#native.dispose();
  }
}

function createFrom(array: TypedArray, dtype: DType, shape: number[] | undefined, rawBits: boolean): Tensor {
  const elements = rawBits ? array.byteLength / itemSize(dtype) : array.length;
  if (!Number.isInteger(elements)) {
    throw new PaceShapeError(
      `data has ${array.byteLength} bytes, not a whole number of ${dtype} elements (${itemSize(dtype)} bytes each)`,
    );
  }
  const resultShape = shape ?? [elements];
  const needed = product(resultShape);
  if (elements !== needed) {
    throw new PaceShapeError(`data has ${elements} elements but shape [${resultShape.join(',')}] needs ${needed}`);
  }
  // A SharedArrayBuffer could change under the copy: take a private snapshot first.
  const source = types.isArrayBuffer(array.buffer) ? array : array.slice();
  const handle = nativeAddon().createTensor(
    source.buffer as ArrayBuffer,
    source.byteOffset,
    source.byteLength,
    dtype,
    resultShape,
  );
  return new Tensor(handle);
}

function withDtype(source: Tensor, dtype: DType, device: string | undefined): Tensor {
  try {
    return onDevice(source.cast(dtype), device);
  } finally {
    source.dispose();
  }
}

function onDevice(result: Tensor, device: string | undefined): Tensor {
  if (device === undefined || device === 'cpu') return result;
  try {
    return result.to(device);
  } finally {
    result.dispose();
  }
}
