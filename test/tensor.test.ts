import {
  doctor,
  memoryStats,
  PaceOptionError,
  PaceShapeError,
  PaceStateError,
  PaceUnsupportedError,
  Tensor,
  tensor,
  type TypedArray,
} from '../lib';
import { nativeAddon } from '../lib/native';
import { RowsTensorWriter, tensorFromPieces } from '../lib/tensor';
import { testIf } from './support/test-if';

describe('tensor(): creation from typed arrays', () => {
  test('a Float32Array with a shape becomes a float32 CPU tensor with the same values', () => {
    const values = new Float32Array([1.5, -2, 3.25, 4, 5, 6]);
    using t = tensor(values, [2, 3]);
    expect(t).toBeInstanceOf(Tensor);
    expect(t.shape).toEqual([2, 3]);
    expect(t.dtype).toBe('float32');
    expect(t.device).toBe('cpu');
    expect(t.size).toBe(6);
    expect(t.byteLength).toBe(24);
    expect(t.toFloat32Array()).toEqual(values);
    expect(t.toString()).toBe('Tensor(float32[2,3], cpu)');
  });

  test.each([
    ['float64', new Float64Array([1.25, -1e300, 3])],
    ['int32', new Int32Array([1, -2147483648, 2147483647])],
    ['int16', new Int16Array([1, -32768, 32767])],
    ['int8', new Int8Array([1, -128, 127])],
    ['uint8', new Uint8Array([0, 128, 255])],
    ['int64', new BigInt64Array([1n, -(2n ** 62n), 2n ** 53n + 1n])],
  ])('%s data keeps its dtype and exact values', (dtype, values) => {
    using t = tensor(values);
    expect(t.dtype).toBe(dtype);
    expect(t.shape).toEqual([3]);
    expect(t.data()).toEqual(values);
  });

  test('int64 values beyond 2^53 survive exactly', () => {
    using t = tensor(new BigInt64Array([2n ** 62n + 7n]));
    expect(t.toBigInt64Array()[0]).toBe(2n ** 62n + 7n);
  });

  test('float16 and bfloat16 from raw bits decode to the IEEE values', () => {
    using half = tensor(new Uint16Array([0x3c00, 0xc000, 0x7bff, 0x0001]), [4], { dtype: 'float16' });
    expect(half.dtype).toBe('float16');
    expect(Array.from(half.toFloat32Array())).toEqual([1, -2, 65504, 2 ** -24]);
    using brain = tensor(new Uint16Array([0x3f80, 0x4049]), [2], { dtype: 'bfloat16' });
    expect(Array.from(brain.toFloat32Array())).toEqual([1, 3.140625]);
  });

  test('a dtype option converts values with round-to-nearest (float32 -> float16)', () => {
    using t = tensor(new Float32Array([1.5, 2.25, 0.001]), [3], { dtype: 'float16' });
    expect(t.dtype).toBe('float16');
    // 0.001 = 2^-10 * 1.024, mantissa 24.576 rounds to 25: bits 0x1400 + 25.
    expect(Array.from(t.data() as Uint16Array)).toEqual([0x3e00, 0x4080, 0x1419]);
    expect(t.toFloat32Array()[2]).toBeCloseTo(2 ** -10 * (1 + 25 / 1024), 9);
  });

  test('bytes with a dtype are taken as raw little-endian elements (Buffer, ArrayBuffer)', () => {
    const floats = new Float32Array([0.5, -7]);
    using fromBuffer = tensor(Buffer.from(floats.buffer), [2], { dtype: 'float32' });
    expect(Array.from(fromBuffer.toFloat32Array())).toEqual([0.5, -7]);
    using fromArrayBuffer = tensor(floats.buffer, [1, 2], { dtype: 'float32' });
    expect(fromArrayBuffer.shape).toEqual([1, 2]);
    expect(Array.from(fromArrayBuffer.toFloat32Array())).toEqual([0.5, -7]);
  });

  test('a typed array view at an offset copies only its own elements', () => {
    const backing = new Float32Array([9, 9, 1, 2, 3, 9]);
    using t = tensor(backing.subarray(2, 5));
    expect(Array.from(t.toFloat32Array())).toEqual([1, 2, 3]);
  });

  test('the data is copied: changing the array afterwards does not change the tensor', () => {
    const values = new Float32Array([1, 2, 3]);
    using t = tensor(values);
    values[0] = 100;
    expect(t.toFloat32Array()[0]).toBe(1);
  });

  test('scalars and empty tensors', () => {
    using scalar = tensor(new Float32Array([4.5]), []);
    expect(scalar.shape).toEqual([]);
    expect(scalar.toArray()).toBe(4.5);
    using empty = tensor(new Float32Array(0), [0, 3]);
    expect(empty.shape).toEqual([0, 3]);
    expect(empty.size).toBe(0);
    expect(empty.toFloat32Array()).toHaveLength(0);
  });
});

describe('tensor(): creation from nested arrays', () => {
  test('nested arrays give the shape and default to float32', () => {
    using t = tensor([
      [1, 2, 3],
      [4, 5, 6],
    ]);
    expect(t.shape).toEqual([2, 3]);
    expect(t.dtype).toBe('float32');
    expect(t.toArray()).toEqual([
      [1, 2, 3],
      [4, 5, 6],
    ]);
  });

  test('a dtype option picks the element type, including half precision', () => {
    using ids = tensor([3, 1, 2], undefined, { dtype: 'int64' });
    expect(ids.toBigInt64Array()).toEqual(new BigInt64Array([3n, 1n, 2n]));
    using flags = tensor([0, 2, -1], undefined, { dtype: 'bool' });
    expect(Array.from(flags.toUint8Array())).toEqual([0, 1, 1]);
    using half = tensor([0.5, 65504], undefined, { dtype: 'bfloat16' });
    expect(half.dtype).toBe('bfloat16');
    expect(half.toFloat32Array()[0]).toBe(0.5);
  });

  test('an explicit shape reshapes flat numbers', () => {
    using t = tensor([1, 2, 3, 4], [2, 2]);
    expect(t.toArray()).toEqual([
      [1, 2],
      [3, 4],
    ]);
  });
});

describe('tensor(): bad input gets a clear error', () => {
  test('data length that disagrees with the shape', () => {
    expect(() => tensor(new Float32Array(5), [2, 3])).toThrow('data has 5 elements but shape [2,3] needs 6');
    expect(() => tensor(Buffer.alloc(10), [3], { dtype: 'float32' })).toThrow(
      'data has 10 bytes, not a whole number of float32 elements (4 bytes each)',
    );
  });

  test('negative, fractional and non-numeric dimensions', () => {
    expect(() => tensor(new Float32Array(6), [2, -3])).toThrow('shape[1] must be a non-negative integer, got -3');
    expect(() => tensor(new Float32Array(6), [1.5, 4])).toThrow('shape[0] must be a non-negative integer, got 1.5');
    expect(() => tensor(new Float32Array(6), ['6' as unknown as number])).toThrow(
      'shape[0] must be a non-negative integer',
    );
  });

  test('a shape too large to count, whatever the order of its dimensions and with a 0 among them', () => {
    // Bug: [0, N, N] was made (and saved to a file no reader takes) while [N, N, 0] failed as an internal error.
    const huge = 2 ** 53 - 1;
    for (const shape of [
      [0, huge, huge],
      [huge, huge, 0],
    ]) {
      expect(() => tensor(new Float32Array(0), shape)).toThrow(
        new PaceShapeError(`shape [${shape.join(', ')}] has more elements than a tensor can count (2^63 - 1)`),
      );
    }
    expect(tensor(new Float32Array(0), [0, 2 ** 31, 2 ** 31]).shape).toEqual([0, 2 ** 31, 2 ** 31]);
  });

  test('typed arrays converted to an integer dtype hold only what it holds', () => {
    // Bug: libtorch's cast wrapped or truncated them (-1 became 255 in uint8, 2.7 became 2 in int32), where the same
    // values as nested arrays were refused.
    const cases: [Parameters<typeof tensor>[0], string, string][] = [
      [new Int8Array([-1]), 'uint8', 'data[0] = -1 is outside what uint8 holds'],
      [new Float32Array([300]), 'uint8', 'data[0] = 300 is outside what uint8 holds'],
      [new Int32Array([70000]), 'int16', 'data[0] = 70000 is outside what int16 holds'],
      [new BigInt64Array([2n ** 40n]), 'int32', 'data[0] = 1099511627776 is outside what int32 holds'],
      [new Float32Array([2.5]), 'int32', 'data[0] = 2.5 is not an integer (dtype int32)'],
      [new Float64Array([Number.NaN]), 'int64', 'data[0] = NaN is not an integer (dtype int64)'],
    ];
    for (const [data, dtype, message] of cases) {
      expect(() => tensor(data, undefined, { dtype: dtype as never })).toThrow(message);
    }
    using fine = tensor(new Float32Array([3, -2]), undefined, { dtype: 'int64' });
    expect(fine.toArray()).toEqual([3, -2]);
  });

  test('ragged nested arrays and non-numbers', () => {
    expect(() => tensor([[1, 2], [3]])).toThrow('data[1] must be an array of length 2 (the data is ragged)');
    expect(() => tensor([[1, 'x' as unknown as number]])).toThrow('data[0][1] must be a number');
    expect(() => tensor([1.5], undefined, { dtype: 'int64' })).toThrow('data[0] = 1.5 is not an integer');
  });

  test('invalid options name the option', () => {
    expect(() => tensor(new Float32Array(1), [1], { dtype: 'float33' as never })).toThrow(/^options\.dtype: /);
    expect(() => tensor(new Float32Array(1), [1], { devcie: 'cpu' } as never)).toThrow(/options: .*devcie/);
  });

  test('a Uint16Array without a 16-bit dtype, and data of the wrong kind', () => {
    expect(() => tensor(new Uint16Array(2))).toThrow("a Uint16Array needs options.dtype 'float16', 'bfloat16'");
    expect(() => tensor('1,2,3' as never)).toThrow('data must be a typed array, an ArrayBuffer or an array of numbers');
  });

  test('an unknown device is refused without crashing', () => {
    expect(() => tensor(new Float32Array(1), [1], { device: 'tpu' })).toThrow(/tpu/);
  });

  // doctor() says which branch this machine must take; each branch is asserted (before, either outcome passed).
  const { cuda } = doctor();
  const withCuda = cuda.built && cuda.deviceCount > 0;
  testIf(!withCuda, 'a CUDA device is here')(
    'without CUDA, moving a tensor to cuda throws a clear error instead of crashing',
    () => {
      using t = tensor(new Float32Array([1]));
      const message = new PaceUnsupportedError(
        "device 'cuda': no CUDA device here (this libtorch has no CUDA, or no GPU is visible)",
      );
      expect(() => t.to('cuda')).toThrow(message);
      expect(() => tensor(new Float32Array([1]), [1], { device: 'cuda' })).toThrow(message);
      expect(t.device).toBe('cpu');
      expect(Array.from(t.toFloat32Array())).toEqual([1]);
    },
  );

  testIf(withCuda, 'no CUDA device here')('with CUDA, a tensor moves to the GPU and back with its values', () => {
    const values = new Float32Array([1.5, -2, 3.25, 1e-30]);
    using t = tensor(values, [2, 2]);
    using moved = t.to('cuda');
    expect(moved.device).toMatch(/^cuda(:0)?$/);
    expect(moved.shape).toEqual([2, 2]);
    using back = moved.to('cpu');
    expect(back.toFloat32Array()).toEqual(values);
    using direct = tensor(values, [2, 2], { device: 'cuda' });
    expect(direct.device).toMatch(/^cuda(:0)?$/);
    expect(direct.toFloat32Array()).toEqual(values);
  });
});

describe('Tensor lifetime', () => {
  test('use after dispose() is a clear error; dispose() twice is harmless', () => {
    const t = tensor(new Float32Array([1, 2]));
    t.dispose();
    expect(t.disposed).toBe(true);
    expect(() => t.shape).toThrow('Tensor was disposed');
    expect(() => t.toFloat32Array()).toThrow('Tensor was disposed');
    expect(() => t.to('cpu')).toThrow('Tensor was disposed');
    expect(() => t.dispose()).not.toThrow();
    expect(t.toString()).toBe('Tensor(disposed)');
  });

  test('`using` disposes at the end of the block', () => {
    let escaped: Tensor;
    {
      using t = tensor(new Float32Array([1]));
      escaped = t;
      expect(escaped.disposed).toBe(false);
    }
    expect(escaped.disposed).toBe(true);
  });

  test('view() shares memory with the tensor and outlives dispose()', () => {
    const t = tensor(new Float32Array([1, 2, 3]));
    const view = t.view() as Float32Array;
    view[1] = 42;
    expect(t.toFloat32Array()[1]).toBe(42);
    t.dispose();
    expect(Array.from(view)).toEqual([1, 42, 3]);
  });

  test('cast, clone and to(cpu) produce independent handles', () => {
    using t = tensor(new Float32Array([1.9, -1.9, 2.5]));
    using ints = t.cast('int32');
    expect(Array.from(ints.data() as Int32Array)).toEqual([1, -1, 2]);
    const copy = t.clone();
    const same = t.to('cpu');
    copy.dispose();
    expect(same.toFloat32Array()).toEqual(t.toFloat32Array());
    same.dispose();
    expect(t.disposed).toBe(false);
    // Bug (review): a cast to the tensor's own type handed back the same memory, not the copy it promises.
    using own = t.cast('float32');
    own.view()[0] = 42;
    expect(Array.from(t.toFloat32Array())).toEqual([Math.fround(1.9), Math.fround(-1.9), 2.5]);
  });

  test('native memory is reported to V8 and released by dispose()', () => {
    const values = new Float32Array(16 * 1024 * 1024);
    const v8External = () => nativeAddon().externalMemory();
    const before = v8External();
    const big = tensor(values);
    const during = v8External();
    const MiB = 1024 * 1024;
    // Other ArrayBuffers may come and go meanwhile: allow 1 MiB either way.
    expect(Math.abs(during - before - 64 * MiB)).toBeLessThan(MiB);
    big.dispose();
    expect(Math.abs(during - v8External() - 64 * MiB)).toBeLessThan(MiB);
  });

  test('memoryStats counts live tensors and their bytes exactly', () => {
    const counts = () => {
      const { liveTensors, tensorBytes } = memoryStats();
      return { liveTensors, tensorBytes };
    };
    const before = counts();
    const a = tensor(new Float32Array(1000));
    const b = tensor(new Float64Array(10));
    expect(counts()).toEqual({ liveTensors: before.liveTensors + 2, tensorBytes: before.tensorBytes + 4080 });
    a.dispose();
    b.dispose();
    expect(counts()).toEqual(before);
  });

  test('handles that share one storage count its bytes once, until the last of them goes', () => {
    const before = memoryStats();
    const counts = () => {
      const now = memoryStats();
      return { handles: now.liveTensors - before.liveTensors, bytes: now.tensorBytes - before.tensorBytes };
    };
    const a = tensor(new Float32Array(1000));
    const same = a.to('cpu'); // already there: the same storage
    expect(counts()).toEqual({ handles: 2, bytes: 4000 });
    a.dispose();
    expect(counts()).toEqual({ handles: 1, bytes: 4000 });
    same.dispose();
    expect(counts()).toEqual({ handles: 0, bytes: 0 });
  });
});

describe('reading a tensor out', () => {
  test("data() and the conversions are the caller's own copies, in every dtype path", () => {
    // Through an external buffer over libtorch's copy since the reads stopped copying into V8's own buffer (which
    // ends the process when memory runs out): a read of a tensor already in the asked type must still be a copy.
    using floats = tensor(new Float32Array([1.5, -2, 3]));
    const same = floats.data() as Float32Array;
    same[0] = 99;
    const converted = floats.toFloat64Array();
    converted[1] = 99;
    expect(Array.from(floats.toFloat32Array())).toEqual([1.5, -2, 3]);
    expect(Array.from(converted)).toEqual([1.5, 99, 3]);
    using empty = tensor(new Float32Array(0), [0, 3]);
    expect(empty.data()).toEqual(new Float32Array(0));
  });
});

describe('tensorFromPieces (a decoded dataset joined natively)', () => {
  test('lays the pieces one after another, and refuses pieces that do not make the shape', () => {
    using joined = tensorFromPieces([Buffer.from([1, 2, 3]), new Uint8Array([4, 5, 6]).subarray(1)], [5], 'uint8');
    expect(Array.from(joined.toUint8Array())).toEqual([1, 2, 3, 5, 6]);
    using floats = tensorFromPieces([new Float32Array([0.5]), new Float32Array([1.5, 2.5])], [3], 'float32');
    expect(Array.from(floats.toFloat32Array())).toEqual([0.5, 1.5, 2.5]);
    expect(() => tensorFromPieces([Buffer.alloc(4)], [5], 'uint8')).toThrow(
      new PaceShapeError('the pieces hold 4 bytes but shape [5] of uint8 needs 5'),
    );
  });

  test('copies are JavaScript arrays of their own, transferable to another thread', () => {
    // Bug (review): a copy was an external buffer over libtorch's memory, which Node marks untransferable: a
    // worker posting its logits with a transfer list got a DataCloneError (Node 21 and later), or a silent copy.
    using logits = tensor(new Float32Array([1, 2, 3, 4]), [2, 2]);
    for (const copy of [logits.toFloat32Array(), logits.data(), logits.toFloat64Array(), logits.toBigInt64Array()]) {
      const moved = structuredClone(copy, { transfer: [copy.buffer as ArrayBuffer] });
      expect(copy.buffer.byteLength).toBe(0); // moved, not copied
      expect(Array.from(moved as ArrayLike<number | bigint>).map(Number)).toEqual([1, 2, 3, 4]);
    }
    using empty = tensor(new Float32Array(0), [0, 3]);
    expect(empty.toFloat32Array()).toEqual(new Float32Array(0));
    // a bfloat16 tensor's raw bits, the same as a float32 → bfloat16 conversion gives
    using floats = tensor(new Float32Array([1, -2]), [2]);
    using half = floats.cast('bfloat16');
    expect(Array.from(half.data() as Uint16Array)).toEqual([0x3f80, 0xc000]);
  });

  test('holds more than the 4 GiB one JavaScript buffer may hold on Node 20', () => {
    const piece = Buffer.alloc(256 * 2 ** 20, 7); // the same 256 MiB sixteen times, and a little more
    const pieces = [...Array.from({ length: 16 }, () => piece), piece.subarray(0, 64 * 64)];
    using big = tensorFromPieces(pieces, [2 ** 20 + 1, 64, 64], 'uint8');
    expect(big.byteLength).toBe(2 ** 32 + 64 * 64);
    expect(big.shape).toEqual([2 ** 20 + 1, 64, 64]);
    // Bug: view() of it freed the tensor's keep-alive twice and aborted the process. Past 4 GiB it is a copy, which
    // a runtime whose typed arrays hold fewer elements (Node 20: 2³² − 1) refuses as an error, before copying.
    let copy: TypedArray | undefined;
    try {
      copy = big.view();
    } catch (error) {
      expect(error).toBeInstanceOf(PaceUnsupportedError);
      expect((error as Error).message).toMatch(
        new RegExp(`^the tensor's ${2 ** 32 + 64 * 64} elements could not be copied into one JavaScript typed array`),
      );
    }
    if (copy) expect([copy.length, copy[0], copy[copy.length - 1]]).toEqual([2 ** 32 + 64 * 64, 7, 7]);
  });
});

describe('RowsTensorWriter (a decoded dataset written row by row as it arrives)', () => {
  test('puts rows in any order, and finish keeps the given ones, moved down in order', () => {
    using writer = new RowsTensorWriter(4, [2], 'uint8');
    writer.put(3, new Uint8Array([7, 8]));
    writer.put(0, Buffer.from([1, 2]));
    writer.put(2, new Uint8Array([0, 5, 6]).subarray(1));
    writer.put(1, new Uint8Array([3, 4]));
    writer.put(1, new Uint8Array([9, 9])); // put again: the last one stands
    using all = new RowsTensorWriter(2, [1], 'float32');
    all.put(1, new Float32Array([2.5]));
    all.put(0, new Float32Array([-1]));
    using floats = all.finish([0, 1]);
    expect(Array.from(floats.toFloat32Array())).toEqual([-1, 2.5]);
    using kept = writer.finish([0, 2, 3]); // row 1 skipped: rows 2 and 3 move down one
    expect(kept.shape).toEqual([3, 2]);
    expect(Array.from(kept.toUint8Array())).toEqual([1, 2, 5, 6, 7, 8]);
    using none = new RowsTensorWriter(3, [2, 2], 'uint8').finish([]);
    expect(none.shape).toEqual([0, 2, 2]);
  });

  test('refuses a row of the wrong size or number, rows never put, rows out of order, and use once spent', () => {
    using writer = new RowsTensorWriter(3, [2], 'uint8');
    expect(() => writer.put(0, new Uint8Array(3))).toThrow(new PaceShapeError('row 0 holds 3 bytes where a row is 2'));
    expect(() => writer.put(0, new Float32Array(2))).toThrow(
      new PaceShapeError('row 0 holds 8 bytes where a row is 2'),
    );
    for (const row of [-1, 3, 1.5, Number.NaN]) {
      expect(() => writer.put(row, new Uint8Array(2))).toThrow(PaceOptionError);
    }
    writer.put(0, new Uint8Array([1, 1]));
    writer.put(2, new Uint8Array([3, 3]));
    expect(() => writer.finish([0, 1])).toThrow(new PaceOptionError('row 1 was never put'));
    expect(() => writer.finish([2, 0])).toThrow(
      new PaceOptionError('keptRows[1] is not an increasing row number below 3'),
    );
    expect(() => writer.finish([0, 0])).toThrow(PaceOptionError);
    using kept = writer.finish([2]);
    expect(Array.from(kept.toUint8Array())).toEqual([3, 3]);
    expect(() => writer.put(1, new Uint8Array(2))).toThrow(
      new PaceStateError('the rows writer was finished or disposed'),
    );
    expect(() => writer.finish([0])).toThrow(PaceStateError);
    expect(() => new RowsTensorWriter(-1, [2], 'uint8')).toThrow(PaceOptionError);
  });
});
