/**
 * The most scans a JPEG may hold. A progressive photo has about ten (a few dozen at most); the decoder walks
 * every block of the image once per scan, so a crafted file of thousands of tiny scans (18 bytes each) costs
 * minutes of CPU for a few hundred kilobytes, and libvips sets no limit of its own.
 */
export const MAX_JPEG_SCANS = 256;

const MARKER = 0xff;
const SOS = 0xda;
const EOI = 0xd9;

/** Markers that stand alone, without a length: TEM, RST0-7, SOI, EOI, and a stuffed 0xFF00 inside scan data. */
function standsAlone(marker: number): boolean {
  return marker === 0x00 || marker === 0x01 || (marker >= 0xd0 && marker <= 0xd9);
}

/**
 * How many scans (SOS segments) the JPEG in `body` holds, counting up to `limit + 1`. Segments are skipped by
 * their lengths, so a thumbnail inside EXIF is not counted; a scan's entropy-coded data is passed over to its
 * next marker (0xFF followed by neither 0x00 nor a restart). A damaged file is counted as far as it reads: the
 * decoder refuses it.
 */
export function jpegScanCount(body: Buffer, limit = MAX_JPEG_SCANS): number {
  let scans = 0;
  let at = 2; // after SOI
  while (at + 1 < body.length && scans <= limit) {
    if (body[at] !== MARKER) {
      const next = body.indexOf(MARKER, at);
      if (next < 0) break;
      at = next;
      continue;
    }
    const marker = body[at + 1];
    if (marker === MARKER)
      at += 1; // fill byte
    else if (marker === EOI) break;
    else if (standsAlone(marker)) at += 2;
    else {
      if (at + 3 >= body.length) break;
      if (marker === SOS) scans++;
      at += 2 + body.readUInt16BE(at + 2); // a scan's data follows its header, and is walked marker by marker
    }
  }
  return scans;
}

/** Why a JPEG is refused before decoding, or undefined: more scans than {@link MAX_JPEG_SCANS}. */
export function tooManyJpegScans(body: Buffer): string | undefined {
  const scans = jpegScanCount(body);
  if (scans <= MAX_JPEG_SCANS) return undefined;
  return (
    `the JPEG holds more than ${MAX_JPEG_SCANS} scans (a photo has a few dozen at most); each costs a pass over ` +
    'the whole image, so it is refused before decoding'
  );
}
