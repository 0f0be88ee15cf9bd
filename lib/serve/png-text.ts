import { HttpError } from './http-error';

/** PNG chunk types that hold text or a colour profile, compressed or not: nothing a prediction reads. */
const unread = new Set(['tEXt', 'zTXt', 'iTXt', 'iCCP'].map((type) => Buffer.from(type, 'latin1').readUInt32BE()));
const IHDR = Buffer.from('IHDR', 'latin1').readUInt32BE();

/** More chunks than any image needs (an encoder's IDAT chunks are kilobytes): a body of more is refused. */
export const MAX_PNG_CHUNKS = 65_536;

const signatureLength = 8;
const chunkOverhead = 12; // length, type, CRC

/**
 * The PNG `body` without its text and colour-profile chunks, every other byte as it was (each chunk carries its own
 * CRC, so the rest stays valid); `body` itself when it has none. The decoder inflates every zTXt, iTXt and iCCP
 * chunk while reading the header alone, into strings handed to JavaScript: 33 KB of zTXt cost 340 ms and 32 MB of
 * heap per upload. The pixels do not depend on them: text is never read, and the profile is ignored as Pillow
 * ignores it. A file that does not start with its IHDR is left whole for the decoder to refuse (removing a chunk
 * before it would make it valid), and so is a chunk that runs past the end, with all that follows it. The walk
 * reads each chunk's header alone, and stops past {@link MAX_PNG_CHUNKS} (65,536): it runs on the event loop.
 */
export function withoutPngText(body: Buffer): Buffer {
  if (body.length < signatureLength + chunkOverhead || body.readUInt32BE(signatureLength + 4) !== IHDR) return body;
  const dropped: [number, number][] = [];
  let at = signatureLength;
  for (let chunks = 1; at + chunkOverhead <= body.length; chunks++) {
    if (chunks > MAX_PNG_CHUNKS) {
      throw new HttpError(400, `the PNG holds more than ${MAX_PNG_CHUNKS} chunks, far more than any image needs`);
    }
    const end = at + chunkOverhead + body.readUInt32BE(at);
    if (end > body.length) break;
    if (unread.has(body.readUInt32BE(at + 4))) {
      const last = dropped.at(-1);
      if (last && last[1] === at) last[1] = end;
      else dropped.push([at, end]);
    }
    at = end;
  }
  if (dropped.length === 0) return body;
  const kept = Buffer.allocUnsafe(body.length - dropped.reduce((sum, [from, to]) => sum + to - from, 0));
  let written = 0;
  let from = 0;
  for (const [start, end] of dropped) {
    written += body.copy(kept, written, from, start);
    from = end;
  }
  body.copy(kept, written, from);
  return kept;
}
