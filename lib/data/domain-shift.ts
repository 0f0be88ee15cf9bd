import { PaceInputError, PaceNotFoundError } from '../errors';
import type { Normalization } from './dataset';
import { meanStdOf } from '../models/timm-constants';
import { IMAGENET_A_CLASSES, IMAGENET_R_CLASSES } from './domain-shift-classes';
import { parseSplitList, type SplitEntry } from './splits';

/** ImageNet-1K's class count: every domain-adaptation list labels its images with these indices. */
export const IMAGENET_CLASSES = 1000;

/** ImageNet's mean and std, with which the reference normalises its benchmarks whatever the backbone. */
export const IMAGENET_NORMALIZATION: Readonly<Normalization> = meanStdOf('imagenet');

/**
 * The evaluation sets of the paper's domain-adaptation protocol (NOAH's), in the order reports show them: the
 * source (ImageNet-1K val) first, then the four shifted targets. `classes` are the classes of the sets that cover
 * only some of the 1,000 (ImageNet-A and -R: 200 each), by default evaluated with the logits restricted to them.
 */
export const DOMAIN_SHIFT_SETS = [
  { name: 'imagenet', title: 'ImageNet', classes: undefined, source: true },
  { name: 'imagenet-sketch', title: '-Sketch', classes: undefined, source: false },
  { name: 'imagenetv2', title: '-V2', classes: undefined, source: false },
  { name: 'imagenet-a', title: '-A', classes: IMAGENET_A_CLASSES, source: false },
  { name: 'imagenet-r', title: '-R', classes: IMAGENET_R_CLASSES, source: false },
] as const;

/**
 * How a domain-adaptation list's images are brought to the model's size: `center-crop` is PACE's evaluation
 * transform (torchvision's `Resize(256)` and `CenterCrop(224)`, bilinear), `squash-crop` NOAH's (`Resize((256,
 * 256))`, bicubic, then `CenterCrop(224)`).
 */
export const DOMAIN_SHIFT_RESIZES = ['center-crop', 'squash-crop'] as const;
export type DomainShiftResize = (typeof DOMAIN_SHIFT_RESIZES)[number];

/** A domain-adaptation evaluation set's name. */
export type DomainShiftSetName = (typeof DOMAIN_SHIFT_SETS)[number]['name'];

/** The set of that name, or an error listing the known names. */
export function domainShiftSet(name: string): (typeof DOMAIN_SHIFT_SETS)[number] {
  const set = DOMAIN_SHIFT_SETS.find((s) => s.name === name);
  if (!set) {
    throw new PaceNotFoundError(
      `'${name}' is not a domain-adaptation set (expected one of ${DOMAIN_SHIFT_SETS.map((s) => s.name).join(', ')})`,
    );
  }
  return set;
}

/**
 * A domain-adaptation list (CoOp's / NOAH's format: `<relative path> <label>` per line, the label being the last
 * space-separated field, so paths may contain spaces; labels are ImageNet-1K indices) with its paths resolved
 * against `root`, the folder the list's paths start from. Malformed lines and labels outside 0-999 are errors
 * naming the file and line.
 */
export function domainShiftEntries(list: string, root: string): SplitEntry[] {
  return parseSplitList(list, { root, numClasses: IMAGENET_CLASSES });
}

/** The classes that occur among the labels, ascending: a list's class subset. */
export function classesOf(labels: Iterable<number>): number[] {
  return [...new Set(labels)].sort((a, b) => a - b);
}

/**
 * An explicit class subset checked: integers in 0..numClasses-1, none repeated, at least one; returned
 * ascending. `where` names it in messages.
 */
export function checkClassSubset(classes: readonly number[], numClasses: number, where: string): number[] {
  if (classes.length === 0) throw new PaceInputError(`${where}: the class subset is empty`);
  const seen = new Set<number>();
  for (const c of classes) {
    if (!Number.isInteger(c) || c < 0 || c >= numClasses) {
      throw new PaceInputError(`${where}: class ${c} is not one of the ${numClasses} classes (0-${numClasses - 1})`);
    }
    if (seen.has(c)) throw new PaceInputError(`${where}: class ${c} is listed twice`);
    seen.add(c);
  }
  return [...seen].sort((a, b) => a - b);
}
