import sharp from 'sharp';

import { HttpError } from './http-error';
import { Lane } from './decode-pool';

/** The body types the server decodes, and the format sharp must find in each. */
export const imageTypes: Record<string, string> = { 'image/jpeg': 'jpeg', 'image/png': 'png', 'image/webp': 'webp' };

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

  /** The image as RGB uint8 pixels of size×size (EXIF orientation applied), checked against its declared type. */
  async decode(body: Buffer, declaredType: string, size: number): Promise<Buffer> {
    let metadata: sharp.Metadata;
    try {
      metadata = await sharp(body, { failOn: 'error', limitInputPixels: false }).metadata();
    } catch (error) {
      throw new HttpError(400, `the body is not a readable image (${(error as Error).message})`);
    }
    const expected = imageTypes[declaredType];
    if (metadata.format !== expected) {
      throw new HttpError(
        415,
        `the body was declared ${declaredType} but is ${metadata.format ?? 'of an unknown format'}`,
      );
    }
    const pixels = (metadata.width ?? 0) * (metadata.height ?? 0);
    if (pixels > this.limits.maxPixels) {
      throw new HttpError(413, `the image has ${pixels} pixels, more than the ${this.limits.maxPixels} accepted`);
    }
    const lane = pixels <= this.limits.smallPixels ? this.small : this.large;
    return lane.run(async () => {
      try {
        return await sharp(body, { failOn: 'error', limitInputPixels: this.limits.maxPixels })
          .rotate()
          .removeAlpha()
          .toColourspace('srgb')
          .resize(size, size, { fit: 'fill', kernel: 'cubic' })
          .raw()
          .toBuffer();
      } catch (error) {
        throw new HttpError(400, `the body is not a readable image (${(error as Error).message})`);
      }
    });
  }
}
