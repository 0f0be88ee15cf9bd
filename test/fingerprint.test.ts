import zlib from 'node:zlib';

import { tensor, type Tensor } from '../lib';
import { handleOf } from '../lib/tensor';

// A tensor's content fingerprint (native/core/tensor/fingerprint.h), which run folders record to know a training
// set again, computed here independently: CRC-32 over the dtype's name, each size as a little-endian int64, then
// the bytes, whole up to 1 MiB (or when asked), else 64 windows of 16 KiB spread evenly from the first byte to the
// last. Its value must never change: recorded fingerprints would stop matching.
function expectedFingerprint(t: Tensor, whole: boolean): string {
  const raw = t.data();
  const bytes = Buffer.from(raw.buffer, raw.byteOffset, raw.byteLength);
  let crc = zlib.crc32(t.dtype);
  for (const size of t.shape) {
    const field = Buffer.alloc(8);
    field.writeBigInt64LE(BigInt(size));
    crc = zlib.crc32(field, crc);
  }
  const total = bytes.length;
  const [kWhole, kWindow, kWindows] = [1 << 20, 16 << 10, 64];
  if (whole || total <= kWhole) {
    crc = zlib.crc32(bytes, crc);
  } else {
    for (let i = 0; i < kWindows; i++) {
      const start = Number((BigInt(i) * BigInt(total - kWindow)) / BigInt(kWindows - 1));
      crc = zlib.crc32(bytes.subarray(start, start + kWindow), crc);
    }
  }
  return `crc32:${crc.toString(16).padStart(8, '0')}`;
}

test('a content fingerprint is CRC-32 over dtype, sizes and the bytes (whole, or 64 windows past 1 MiB)', () => {
  const cases: Tensor[] = [
    tensor(
      Float32Array.from({ length: 5_000_000 }, (_, i) => Math.sin(i * 0.37)),
      [2_500_000, 2],
    ),
    tensor(
      Uint8Array.from({ length: 3_000_001 }, (_, i) => (i * 7) % 251),
      [3_000_001],
    ),
    tensor(
      Float64Array.from({ length: 1000 }, (_, i) => Math.cos(i)),
      [10, 100],
    ),
  ];
  for (const t of cases) {
    for (const whole of [false, true]) {
      expect([t.dtype, t.shape, whole, handleOf(t).fingerprint(whole)]).toEqual([
        t.dtype,
        t.shape,
        whole,
        expectedFingerprint(t, whole),
      ]);
    }
    t.dispose();
  }
});
