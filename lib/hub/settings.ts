import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { getHFHubCachePath } from '@huggingface/hub';

/** Where and how pretrained weights are fetched: the options given, else huggingface_hub's environment variables. */
export interface HubSettings {
  /** The Hub's base URL, without a trailing slash. */
  endpoint: string;
  /** The access token sent, if any. */
  token?: string;
  /** The cache root (huggingface_hub's layout below it). */
  cacheDir: string;
  /** Cache only: no request is made. */
  offline: boolean;
}

/** The settings options may override. */
export interface HubSettingsOptions {
  /** The cache root (default: `HF_HUB_CACHE`, else `HF_HOME/hub`, else `~/.cache/huggingface/hub`). */
  cacheDir?: string;
  /** The Hub's URL (default: `HF_ENDPOINT`, else https://huggingface.co). */
  endpoint?: string;
  /** An access token (default: `HF_TOKEN`, else the token `huggingface-cli login` saved); `false` sends none. */
  token?: string | false;
  /** Use only the cache (default: `HF_HUB_OFFLINE` set to 1, true, yes or on). */
  offline?: boolean;
}

const DEFAULT_ENDPOINT = 'https://huggingface.co';

/** huggingface_hub's truthy environment values. */
function isTrue(value: string | undefined): boolean {
  return ['1', 'ON', 'YES', 'TRUE'].includes((value ?? '').trim().toUpperCase());
}

function nonEmpty(value: string | undefined): string | undefined {
  const trimmed = value?.trim();
  return trimmed ? trimmed : undefined;
}

/** The token `huggingface-cli login` stores: `HF_TOKEN_PATH`, else `HF_HOME/token`. */
function savedToken(env: NodeJS.ProcessEnv): string | undefined {
  const home = env.HF_HOME ?? path.join(env.XDG_CACHE_HOME ?? path.join(os.homedir(), '.cache'), 'huggingface');
  try {
    return nonEmpty(fs.readFileSync(env.HF_TOKEN_PATH ?? path.join(home, 'token'), 'utf8'));
  } catch {
    return undefined;
  }
}

/** The settings in force: `options` over the environment. */
export function hubSettings(options: HubSettingsOptions): HubSettings {
  const env = process.env;
  const endpoint = (options.endpoint ?? nonEmpty(env.HF_ENDPOINT) ?? DEFAULT_ENDPOINT).replace(/\/+$/, '');
  const token =
    options.token === false
      ? undefined
      : (nonEmpty(options.token) ?? nonEmpty(env.HF_TOKEN) ?? nonEmpty(env.HUGGING_FACE_HUB_TOKEN) ?? savedToken(env));
  const cacheDir = path.resolve(options.cacheDir ?? getHFHubCachePath());
  return { endpoint, token, cacheDir, offline: options.offline ?? isTrue(env.HF_HUB_OFFLINE) };
}
