/** PNG chunks that hold text or a colour profile, compressed or not: nothing a prediction reads. */
const unread = new Set(['tEXt', 'zTXt', 'iTXt', 'iCCP']);

const signatureLength = 8;
const chunkOverhead = 12; // length, type, CRC

/**
 * The PNG `body` without its text and colour-profile chunks, every other byte as it was (each chunk carries its own
 * CRC, so the rest stays valid); `body` itself when it has none. The decoder inflates every zTXt, iTXt and iCCP
 * chunk while reading the header alone, into strings handed to JavaScript: 32 KB of zTXt cost 340 ms and 33 MB of
 * heap per upload. The pixels do not depend on them: text is never read, and the profile is ignored as Pillow
 * ignores it. A chunk that runs past the end is left for the decoder to refuse, with all that follows it.
 */
export function withoutPngText(body: Buffer): Buffer {
  const kept: Buffer[] = [body.subarray(0, signatureLength)];
  let dropped = false;
  let at = signatureLength;
  while (at + chunkOverhead <= body.length) {
    const end = at + chunkOverhead + body.readUInt32BE(at);
    if (end > body.length) break;
    if (unread.has(body.toString('latin1', at + 4, at + 8))) dropped = true;
    else kept.push(body.subarray(at, end));
    at = end;
  }
  if (!dropped) return body;
  kept.push(body.subarray(at));
  return Buffer.concat(kept);
}
