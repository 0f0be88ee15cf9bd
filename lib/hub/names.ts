import { PaceNotFoundError, PaceOptionError } from '../errors';
import { deprecatedName, tagsOf, timmRepo } from './catalog';

/** A pretrained name resolved to the Hub repository that holds its weights. */
export interface PretrainedRef {
  /** The name as resolved: `architecture.tag` (the default tag filled in), or `hf-hub:org/repo`. */
  name: string;
  /** The Hub repository, `org/name`. */
  repo: string;
  /** A revision given in the name (`hf-hub:org/repo@revision`). */
  revision?: string;
  /** timm's architecture and tag, for names from the catalog. */
  architecture?: string;
  tag?: string;
}

const HUB_PREFIX = 'hf-hub:';
const timmName = /^([a-z0-9_]+)(?:\.([a-z0-9_]+))?$/;
const repoPart = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;
/** Files that are weights by their extension: such a string is a path, never a pretrained name. */
const weightExtension = /\.(safetensors|npz|pt|pth|bin|ckpt)$/i;

/** A revision (branch, tag or commit) that is safe as a file name below `refs/` (`pr/1` allowed, `..` not). */
export function checkRevision(revision: string, name: string): string {
  const parts = revision.split('/');
  if (
    revision.length === 0 ||
    parts.some((part) => part === '' || part === '.' || part === '..' || /[\\\0]/.test(part))
  ) {
    throw new PaceOptionError(`pretrained '${name}': '${revision}' is not a revision (a branch, tag or commit hash)`);
  }
  return revision;
}

function parseHubName(text: string): PretrainedRef {
  const [id, revision, ...extra] = text.slice(HUB_PREFIX.length).split('@');
  const parts = id.split('/');
  const valid =
    extra.length === 0 &&
    parts.length === 2 &&
    parts.every((part) => repoPart.test(part) && !part.includes('..') && !part.includes('--'));
  if (!valid) {
    throw new PaceOptionError(`pretrained '${text}': expected hf-hub:org/name or hf-hub:org/name@revision`);
  }
  return {
    name: revision === undefined ? `${HUB_PREFIX}${id}` : text,
    repo: id,
    revision: revision === undefined ? undefined : checkRevision(revision, text),
  };
}

/**
 * Resolves a pretrained name: timm's `architecture.tag` (`vit_base_patch16_224.augreg2_in21k_ft_in1k`), an
 * architecture alone (timm's default tag), a deprecated timm name (`vit_base_patch16_224_in21k`), or
 * `hf-hub:org/repo[@revision]`. A malformed name is a PaceOptionError; an unknown architecture or tag a
 * PaceNotFoundError naming what is known.
 */
export function parsePretrainedName(text: string): PretrainedRef {
  if (typeof text !== 'string' || text.trim() === '') {
    throw new PaceOptionError(`pretrained name must be a non-empty string, got ${JSON.stringify(text)}`);
  }
  if (text.startsWith(HUB_PREFIX)) return parseHubName(text);
  const match = timmName.exec(deprecatedName(text) ?? text);
  if (!match) {
    throw new PaceOptionError(
      `pretrained '${text}' is not a name: expected architecture[.tag] (vit_base_patch16_224.augreg_in21k) or hf-hub:org/name`,
    );
  }
  const [, architecture, requestedTag] = match;
  const tags = tagsOf(architecture);
  if (!tags) {
    throw new PaceNotFoundError(
      `pretrained '${text}': no pretrained weights are known for '${architecture}'; listPretrained() names them (or use hf-hub:org/name)`,
    );
  }
  const tag = requestedTag ?? tags[0];
  if (!tags.includes(tag)) {
    throw new PaceNotFoundError(
      `pretrained '${text}': '${architecture}' has no tag '${tag}'; its tags: ${tags.join(', ')}`,
    );
  }
  return { name: `${architecture}.${tag}`, repo: timmRepo(architecture, tag), architecture, tag };
}

/**
 * Whether a `pretrained` string names weights on the Hub rather than a local file: `hf-hub:...`, or a known
 * architecture with or without a tag (`vit_base_patch16_224.augreg_in21k`) that does not end in a weights
 * extension. Anything else is a path (write `./name` for a file that happens to be called like a model).
 */
export function isPretrainedName(text: string): boolean {
  if (text.startsWith(HUB_PREFIX)) return true;
  if (weightExtension.test(text)) return false;
  const match = timmName.exec(deprecatedName(text) ?? text);
  return match !== null && tagsOf(match[1]) !== undefined;
}
