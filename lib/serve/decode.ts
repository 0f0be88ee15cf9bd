import sharp from 'sharp';

import { reasonMayBeLost } from '../data/decode-pool';
import { decodeWhole, fastResizedForEvaluation, resizedForEvaluation, type EvalResize } from '../data/image-decode';
import { tooManyJpegScans } from '../data/jpeg-scans';
import { PaceError } from '../errors';
import { HttpError } from './http-error';
import { Lane } from './decode-pool';
import { withoutPngText } from './png-text';

/** The body types the server decodes, and the format sharp must find in each. */
export const imageTypes: Record<string, string> = { 'image/jpeg': 'jpeg', 'image/png': 'png', 'image/webp': 'webp' };

/** Formats known by their first bytes: the three decoded, and others named when a body is declared as one of those. */
const signatures: { format: string; at: number; bytes: string }[] = [
  { format: 'jpeg', at: 0, bytes: 'ffd8ff' },
  { format: 'png', at: 0, bytes: '89504e470d0a1a0a' },
  { format: 'webp', at: 8, bytes: Buffer.from('WEBP').toString('hex') },
  { format: 'gif', at: 0, bytes: Buffer.from('GIF8').toString('hex') },
  { format: 'tiff', at: 0, bytes: '49492a00' },
  { format: 'tiff', at: 0, bytes: '4d4d002a' },
];

function formatBySignature(body: Buffer): string | undefined {
  for (const { format, at, bytes } of signatures) {
    const signature = Buffer.from(bytes, 'hex');
    if (body.length >= at + signature.length && body.subarray(at, at + signature.length).equals(signature)) {
      if (format === 'webp' && body.subarray(0, 4).toString('latin1') !== 'RIFF') continue;
      return format;
    }
  }
  return undefined;
}

/**
 * libvips' error buffer is the process's, and uploads decode concurrently: a failure may come back as "Unknown
 * error" or with another upload's reason appended. Such a failure is tried once more (unless its request was
 * given up on meanwhile), which mostly tells its own reason; if not, no reason is given rather than another
 * client's. (A mixed reason that comes back the same is not believed: the retry runs beside other decodes, and a
 * burst of like uploads mixes alike.)
 */
export async function withOwnReason<T>(attempt: () => Promise<T>, signal?: AbortSignal): Promise<T> {
  try {
    return await attempt();
  } catch (error) {
    if (!reasonMayBeLost(error) || signal?.aborted) throw error;
    try {
      return await attempt();
    } catch (again) {
      throw reasonMayBeLost(again) ? new Error('the decoder gave no reason of its own') : again;
    }
  }
}

/** How uploads are decoded: sizes, and the two lanes that keep large images from delaying small ones. */
export interface DecodeLimits {
  /** Largest image accepted, in pixels (larger ones: 413 before decoding). */
  maxPixels: number;
  /** Images up to this many pixels decode in the small lane; larger ones in the large lane. */
  smallPixels: number;
  /** Concurrent decodes and queued ones, per lane. */
  small: { concurrency: number; maxQueued: number };
  large: { concurrency: number; maxQueued: number };
  retryAfterSeconds: number;
  /** `exact`: decoded whole and resized as `pace eval` resizes (Pillow's pixels); `fast`: libvips alone. */
  decode: 'exact' | 'fast';
}

/**
 * Decodes uploads off the JavaScript thread in two bounded lanes. Decoding shares libuv's worker threads with the
 * model's forward passes; bounding the lanes keeps threads free for the forwards, and routing by the pixel count
 * read from the header keeps a flood of images that are expensive to decode (a few KB of PNG that inflate to
 * tens of megapixels) from delaying ordinary ones.
 */
export class UploadDecoder {
  readonly small: Lane;
  readonly large: Lane;

  constructor(private readonly limits: DecodeLimits) {
    this.small = new Lane('small', limits.small.concurrency, limits.small.maxQueued, limits.retryAfterSeconds);
    this.large = new Lane('large', limits.large.concurrency, limits.large.maxQueued, limits.retryAfterSeconds);
  }

  /**
   * The image as RGB uint8 pixels of size×size (EXIF orientation applied, alpha dropped), resized as `how` says;
   * checked against its declared type first. Once `signal` aborts (the request was given up on), no more work is
   * done for it: a decode waiting for its lane leaves the queue.
   */
  async decode(
    body: Buffer,
    declaredType: string,
    size: number,
    how: EvalResize,
    signal?: AbortSignal,
  ): Promise<Buffer> {
    // Told by its first bytes before sharp sees it: sharp would pick a loader by content, and a body of another
    // format (an SVG, say) can cost seconds to parse for its header alone, outside the lanes.
    const expected = imageTypes[declaredType];
    const signed = formatBySignature(body);
    if (signed === undefined) {
      throw new HttpError(400, 'the body is not a readable image (it starts as no JPEG, PNG or WebP file does)');
    }
    if (signed !== expected) throw new HttpError(415, `the body was declared ${declaredType} but is ${signed}`);
    if (signed === 'png') body = withoutPngText(body);
    const scans = signed === 'jpeg' ? tooManyJpegScans(body) : undefined;
    if (scans !== undefined) throw new HttpError(400, scans);
    let metadata: sharp.Metadata;
    try {
      metadata = await withOwnReason(
        () => sharp(body, { failOn: 'error', limitInputPixels: false }).metadata(),
        signal,
      );
    } catch (error) {
      throw new HttpError(400, `the body is not a readable image (${(error as Error).message})`);
    }
    if (metadata.format !== expected) {
      throw new HttpError(
        415,
        `the body was declared ${declaredType} but is ${metadata.format ?? 'of an unknown format'}`,
      );
    }
    const [width, height] = [metadata.width ?? 0, metadata.height ?? 0];
    const pixels = width * height;
    if (pixels > this.limits.maxPixels) {
      throw new HttpError(413, `the image has ${pixels} pixels, more than the ${this.limits.maxPixels} accepted`);
    }
    // The resize reads every row (or column) of the longer side at the model's width: a thin strip costs far more
    // than its pixels say (a 1 × 4,000,000 PNG of 15 KB, stretched to 224, is 900 M products). Counted as pixels.
    const cost = Math.max(pixels, Math.max(width, height) * size);
    if (cost > this.limits.maxPixels) {
      throw new HttpError(
        413,
        `the image is ${width}x${height}: resizing so thin a strip costs as much as ${cost} pixels, more than the ` +
          `${this.limits.maxPixels} accepted`,
      );
    }
    const lane = cost <= this.limits.smallPixels ? this.small : this.large;
    return lane.run(async () => {
      try {
        // Decoded whole and resized as `pace eval` resizes a file (Pillow's arithmetic where it differs from
        // libvips'), so the server answers for an upload what an evaluation of it computes.
        if (this.limits.decode === 'fast')
          return await withOwnReason(
            () => fastResizedForEvaluation(body, metadata, size, how, this.limits.maxPixels),
            signal,
          );
        const decoded = await withOwnReason(() => decodeWhole(body, this.limits.maxPixels, metadata), signal);
        return await resizedForEvaluation(decoded, size, how);
      } catch (error) {
        // The server's own failures (memory running out in the resize, a broken invariant) are its 500, told to its
        // operator; only what the decoder found in the body is the client's 400.
        if (error instanceof PaceError) throw error;
        throw new HttpError(400, `the body is not a readable image (${(error as Error).message})`);
      }
    }, signal);
  }
}
