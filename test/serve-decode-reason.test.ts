// How the server tells an upload's own decode failure from libvips' lost or mixed reasons (its error buffer is the
// process's): a failure that may not be the upload's own is tried once more, unless its request was given up on.
import { withOwnReason } from '../lib/serve/decode';

/** An attempt that fails with each message in turn, counting its calls. */
function failing(...messages: string[]) {
  const calls = { count: 0 };
  const attempt = () => Promise.reject(new Error(messages[Math.min(calls.count++, messages.length - 1)]));
  return { attempt, calls };
}

test('a reason of one line is the upload own: thrown at once, with no second decode', async () => {
  const { attempt, calls } = failing('pngload_buffer: end of stream');
  await expect(withOwnReason(attempt)).rejects.toThrow('pngload_buffer: end of stream');
  expect(calls.count).toBe(1);
});

test('a lost or mixed reason is tried again; the second reason is given if it is a plain one', async () => {
  const lost = failing('Unknown error', 'VipsJpeg: premature end of JPEG image');
  await expect(withOwnReason(lost.attempt)).rejects.toThrow(/^VipsJpeg: premature end of JPEG image$/);
  expect(lost.calls.count).toBe(2);
  const mixed = failing('webp: unable to parse image\npngload_buffer: end of stream', 'Unknown error');
  await expect(withOwnReason(mixed.attempt)).rejects.toThrow(/^the decoder gave no reason of its own$/);
  const differing = failing('a: one\nb: two', 'a: one\nc: three');
  await expect(withOwnReason(differing.attempt)).rejects.toThrow(/^the decoder gave no reason of its own$/);
});

test('a reason of several lines is never passed on, even when it comes back the same', async () => {
  // The retry runs beside other decodes: a burst of like uploads can mix the same two reasons twice.
  const mixed = 'VipsJpeg: premature end of JPEG image\npngload_buffer: end of stream';
  const { attempt, calls } = failing(mixed, mixed);
  await expect(withOwnReason(attempt)).rejects.toThrow(/^the decoder gave no reason of its own$/);
  expect(calls.count).toBe(2);
  const unknown = failing('Unknown error', 'Unknown error');
  await expect(withOwnReason(unknown.attempt)).rejects.toThrow(/^the decoder gave no reason of its own$/);
});

test('a request given up on while its decode failed is not decoded again', async () => {
  // Bug (a review): the second decode ran in the lane even after a 504 or the client's leaving.
  const given = new AbortController();
  const calls = { count: 0 };
  const attempt = () => {
    calls.count += 1;
    given.abort();
    return Promise.reject(new Error('Unknown error'));
  };
  await expect(withOwnReason(attempt, given.signal)).rejects.toThrow('Unknown error');
  expect(calls.count).toBe(1);
});
