import { z } from 'zod';

import { PaceFileError, PaceNetworkError, PaceNotFoundError, PaceOptionError } from '../errors';
import type { Preprocessing } from '../models/families/family';
import { MAX_TIMER_MS, parseOptions } from '../options';
import { COMMIT_HASH, RepoCache } from './cache';
import { HubClient, validEtag, type RemoteFile } from './client';
import { hubFailure, type FailureContext } from './failures';
import { checkRevision, parsePretrainedName } from './names';
import { readPretrainedConfig } from './pretrained-config';
import { isProgressCallbackError, progressSink, type DownloadProgress } from './progress';
import { DEFAULT_HUB_ENDPOINT, hubSettings } from './settings';
import { transferToCache } from './transfer';

/** The weights file of a timm repository: safetensors only (timm's `pytorch_model.bin` pickles are never fetched). */
export const WEIGHTS_FILE = 'model.safetensors';
export const CONFIG_FILE = 'config.json';
/** The largest config.json accepted (timm's are a few KB). */
const MAX_CONFIG_BYTES = 1 << 20;

export const DownloadPretrainedOptionsSchema = z
  .object({
    /** The cache root (default: `HF_HUB_CACHE`, else `HF_HOME/hub`, else `~/.cache/huggingface/hub`). */
    cacheDir: z.string().min(1).optional(),
    /** The Hub's URL (default: `HF_ENDPOINT`, else https://huggingface.co). */
    endpoint: z.url({ protocol: /^https?$/ }).optional(),
    /** An access token for gated or private repositories (default: `HF_TOKEN`, else the saved login); `false`: none. */
    token: z.union([z.string().min(1), z.literal(false)]).optional(),
    /** Only the cache, no request (default: `HF_HUB_OFFLINE=1`); a file not cached is then an error. */
    offline: z.boolean().optional(),
    /** A branch, tag or commit hash (default `main`, or the `@revision` of an `hf-hub:` name). */
    revision: z.string().min(1).optional(),
    /** Progress: `'auto'` (a bar on a TTY stderr), `true`, `false`, or a function called with each file's bytes. */
    progress: z
      .union([
        z.boolean(),
        z.literal('auto'),
        z.custom<(progress: DownloadProgress) => void>((v) => typeof v === 'function'),
      ])
      .default('auto'),
    /** A transfer that receives nothing for this many milliseconds is abandoned. */
    stallTimeoutMs: z.number().int().min(1).max(MAX_TIMER_MS).default(60_000),
    /**
     * A transfer that brings fewer bytes than this per second, over any window of `stallTimeoutMs`, is abandoned
     * (0: any pace that is not a stall).
     */
    minBytesPerSecond: z
      .number()
      .min(0)
      .max(2 ** 40)
      .default(1024),
    /**
     * Stops the download: the call rejects with the signal's reason, and the file being transferred leaves nothing
     * in the cache (files completed before stay).
     */
    signal: z.custom<AbortSignal>((v) => v instanceof AbortSignal, 'an AbortSignal').optional(),
  })
  .strict();

/** Options of {@link downloadPretrained}. */
export type DownloadPretrainedOptions = z.input<typeof DownloadPretrainedOptionsSchema>;

/** Pretrained weights in the local cache, with what their `config.json` says about them. */
export interface PretrainedWeights {
  /** The name as resolved (`vit_base_patch16_224.augreg2_in21k_ft_in1k`, or `hf-hub:org/name`). */
  name: string;
  /** The Hub repository (`timm/vit_base_patch16_224.augreg2_in21k_ft_in1k`). */
  repo: string;
  /** The revision asked for (`main` unless given). */
  revision: string;
  /** The commit the files come from. */
  commit: string;
  /** The weights: `<cache>/models--<org>--<name>/snapshots/<commit>/model.safetensors`. */
  file: string;
  /** The repository's `config.json` in the same snapshot. */
  configFile: string;
  /** timm's architecture name, as the config gives it. */
  architecture?: string;
  /** The class count of the weights' head (0: features only). */
  numClasses: number;
  /** The classes' names, when the config has them. */
  labelNames?: string[];
  /** How images must be prepared for these weights (from the config's `pretrained_cfg`). */
  preprocessing: Preprocessing;
  /** Whether everything came from the cache, without a request. */
  cached: boolean;
}

/**
 * The weights behind a pretrained name, from the shared Hugging Face cache or, when they are not there yet, from
 * the Hub: `'vit_base_patch16_224.augreg2_in21k_ft_in1k'` (timm's `architecture.tag`; an architecture alone takes
 * timm's default tag) or `'hf-hub:timm/<repo>[@revision]'`. Downloads `model.safetensors` and `config.json` only
 * (never pickles), each verified against the Hub's SHA-256 (git id for small files) before it enters the cache.
 * Files already cached for the revision are used without any request. Honours `HF_ENDPOINT`, `HF_TOKEN`,
 * `HF_HUB_CACHE` / `HF_HOME` and `HF_HUB_OFFLINE`.
 */
export async function downloadPretrained(
  name: string,
  options: DownloadPretrainedOptions = {},
): Promise<PretrainedWeights> {
  const o = parseOptions(DownloadPretrainedOptionsSchema, options, 'options');
  o.signal?.throwIfAborted();
  const ref = parsePretrainedName(name);
  if (o.revision !== undefined && ref.revision !== undefined && o.revision !== ref.revision) {
    throw new PaceOptionError(
      `pretrained '${name}': the name says revision '${ref.revision}', options.revision '${o.revision}'`,
    );
  }
  const revision = checkRevision(o.revision ?? ref.revision ?? 'main', name);
  const settings = hubSettings(o);
  const cache = new RepoCache(settings.cacheDir, ref.repo);
  const files = [WEIGHTS_FILE, CONFIG_FILE];

  const fromCache = (commit: string | undefined) => {
    if (!commit) return undefined;
    const found = files.map((file) => cache.cachedFile(commit, file));
    return found.every((file) => file !== undefined) ? { commit, found: found as string[] } : undefined;
  };
  let cached = true;
  let hit = fromCache(cache.commitOf(revision));
  if (!hit) {
    if (settings.offline) {
      const commit = cache.commitOf(revision);
      const configMissing = commit !== undefined && cache.cachedFile(commit, WEIGHTS_FILE) !== undefined;
      const missing = configMissing
        ? `${ref.repo}'s ${CONFIG_FILE} (revision ${revision}) is not in the cache ${settings.cacheDir}, only its ` +
          `${WEIGHTS_FILE} (timm's Python fetches the weights alone for a named model; pace-peft reads the class ` +
          'count and preprocessing from the config)'
        : `${ref.repo} (revision ${revision}) is not in the cache ${settings.cacheDir}`;
      // The pull that fetches what is missing into this cache, from this endpoint (the switch that made it offline off).
      const pull = [
        'pace',
        'pull',
        name,
        ...(o.revision !== undefined && ref.revision === undefined ? ['--revision', revision] : []),
        ...(o.cacheDir !== undefined ? ['--cache-dir', settings.cacheDir] : []),
        ...(o.endpoint !== undefined ? ['--endpoint', settings.endpoint] : []),
      ]
        .map(shellWord)
        .join(' ');
      // (a pull in the same environment is offline too, whatever made this call so)
      const unset = settings.offlineInEnvironment ? ` and ${settings.offlineInEnvironment} unset` : '';
      throw new PaceNetworkError(
        `pretrained '${name}': ${missing}, and offline mode (${settings.offlineFrom}) forbids downloading it; run ` +
          `\`${pull}\` with network access${unset} first (it fetches what is missing)`,
      );
    }
    if (settings.token !== undefined && !settings.token.startsWith('hf_')) {
      // @huggingface/hub refuses any other token (an old one, a mirror's); for public repositories, sending none works.
      const mirror = settings.endpoint === DEFAULT_HUB_ENDPOINT ? '' : `, also for ${settings.endpoint}`;
      const sendNone =
        settings.tokenFrom === 'options.token' ? 'pass token: false' : 'set HF_HUB_DISABLE_IMPLICIT_TOKEN=1';
      throw new PaceOptionError(
        `pretrained '${name}': the Hub token from ${settings.tokenFrom} must start with 'hf_' (@huggingface/hub ` +
          `requires it${mirror}); use one that does, or for public repositories ${sendNone} to send none`,
      );
    }
    cached = false;
    hit = await fetchIntoCache(ref.repo, revision, files, cache, name, o, settings);
  }
  const [file, configFile] = hit.found;
  const config = readPretrainedConfig(configFile, name);
  return {
    name: ref.name,
    repo: ref.repo,
    revision,
    commit: hit.commit,
    file,
    configFile,
    ...config,
    cached,
  };
}

/** Resolves the revision's commit, downloads what the snapshot lacks, links it, and records the ref. */
async function fetchIntoCache(
  repo: string,
  revision: string,
  files: string[],
  cache: RepoCache,
  name: string,
  o: z.output<typeof DownloadPretrainedOptionsSchema>,
  settings: ReturnType<typeof hubSettings>,
): Promise<{ commit: string; found: string[] }> {
  const client = new HubClient(settings, o.stallTimeoutMs, o.signal);
  const context: FailureContext = {
    name,
    repo,
    revision,
    endpoint: settings.endpoint,
    token: settings.token !== undefined,
  };
  // a stop is the signal's reason, and the progress callback's own error is its own: neither a failure of the Hub
  const fail = (error: unknown, file?: string) =>
    o.signal?.aborted
      ? o.signal.reason
      : isProgressCallbackError(error)
        ? error
        : hubFailure(error, { ...context, file, last: client.last });

  let commit: string;
  let remote: Map<string, RemoteFile>;
  try {
    commit = COMMIT_HASH.test(revision) ? revision : await client.commitOf(repo, revision);
    if (!COMMIT_HASH.test(commit ?? '')) {
      throw new PaceFileError(`pretrained '${name}': the Hub gave '${commit}' as the commit of ${repo}@${revision}`);
    }
    remote = await client.files(repo, commit, files);
  } catch (error) {
    throw fail(error);
  }
  const weights = remote.get(WEIGHTS_FILE);
  if (!weights) {
    throw new PaceNotFoundError(
      `pretrained '${name}': ${repo} has no ${WEIGHTS_FILE} at revision ${revision}; pace-peft downloads safetensors ` +
        `only, never pickles such as pytorch_model.bin`,
    );
  }
  const config = remote.get(CONFIG_FILE);
  if (!config) {
    throw new PaceNotFoundError(`pretrained '${name}': ${repo} has no ${CONFIG_FILE} at revision ${revision}`);
  }
  // Read whole and parsed once downloaded: a timm config is a few KB, and a hostile repository's of gigabytes would
  // fill the disk and then the heap.
  if (config.size > MAX_CONFIG_BYTES) {
    throw new PaceFileError(
      `pretrained '${name}': ${repo}'s ${CONFIG_FILE} is ${config.size} bytes, more than the ${MAX_CONFIG_BYTES} a ` +
        'model config takes; it is not a timm config',
    );
  }
  const progress = progressSink(o.progress, repo);
  const found: string[] = [];
  for (const path of files) {
    const file = remote.get(path) as RemoteFile;
    if (!validEtag(file)) {
      throw new PaceFileError(
        `pretrained '${name}': the Hub describes ${path} of ${repo} with a malformed hash '${file.etag}'`,
      );
    }
    const present = cache.cachedFile(commit, path);
    if (present) {
      found.push(present);
      continue;
    }
    if (!cache.hasBlob(file.etag)) {
      let release: (() => void) | undefined;
      try {
        release = await cache.holdBlobTransfer(file.etag, o.signal, (holder) =>
          progress.waiting(path, file.size, holder),
        );
        // (undefined: another process transferred it meanwhile)
        if (release) {
          const pace = { stallMs: o.stallTimeoutMs, minBytesPerSecond: o.minBytesPerSecond };
          await transferToCache({ client, cache, repo, commit, file, progress, name, signal: o.signal, ...pace });
        }
      } catch (error) {
        throw fail(error, path);
      } finally {
        release?.();
      }
    }
    try {
      found.push(await cache.link(commit, path, file.etag));
    } catch (error) {
      throw fail(error, path);
    }
  }
  try {
    await cache.writeRef(revision, commit);
  } catch (error) {
    throw fail(error);
  }
  return { commit, found };
}

/** `word` as a shell reads it back: as it is when plain, else in single quotes. */
function shellWord(word: string): string {
  return /^[\w@%+=:,./-]+$/.test(word) ? word : `'${word.replace(/'/g, `'\\''`)}'`;
}
