import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { PaceOptionError } from '../errors';

/** Where and how pretrained weights are fetched: the options given, else huggingface_hub's environment variables. */
export interface HubSettings {
  /** The Hub's base URL, without a trailing slash. */
  endpoint: string;
  /** The access token sent, if any. */
  token?: string;
  /** Where the token came from: `options.token`, `HF_TOKEN`, `HUGGING_FACE_HUB_TOKEN` or the saved login. */
  tokenFrom?: string;
  /** The cache root (huggingface_hub's layout below it). */
  cacheDir: string;
  /** Cache only: no request is made. */
  offline: boolean;
  /** What made it offline: `options.offline`, `HF_HUB_OFFLINE` or `TRANSFORMERS_OFFLINE`. */
  offlineFrom?: string;
  /** The environment's switch that asks for offline mode, if one does (whatever the options say). */
  offlineInEnvironment?: string;
}

/** The settings options may override. */
export interface HubSettingsOptions {
  /** The cache root (default: `HF_HUB_CACHE`, else `HF_HOME/hub`, else `~/.cache/huggingface/hub`). */
  cacheDir?: string;
  /** The Hub's URL (default: `HF_ENDPOINT`, else https://huggingface.co). */
  endpoint?: string;
  /**
   * An access token (default: `HF_TOKEN`, else the token `huggingface-cli login` saved, unless
   * `HF_HUB_DISABLE_IMPLICIT_TOKEN` is on); `false` sends none.
   */
  token?: string | false;
  /** Use only the cache (default: `HF_HUB_OFFLINE` or `TRANSFORMERS_OFFLINE` set to 1, true, yes or on). */
  offline?: boolean;
}

export const DEFAULT_HUB_ENDPOINT = 'https://huggingface.co';

/** huggingface_hub's truthy environment values. */
function isTrue(value: string | undefined): boolean {
  return ['1', 'ON', 'YES', 'TRUE'].includes((value ?? '').trim().toUpperCase());
}

function nonEmpty(value: string | undefined): string | undefined {
  const trimmed = value?.trim();
  return trimmed ? trimmed : undefined;
}

/**
 * A path as huggingface_hub reads one from the environment, `os.path.expandvars(os.path.expanduser(value))`: a
 * leading `~` is the home folder, and `$NAME` and `${NAME}` are the variable's value (left as written when unset),
 * so that `HF_HOME=~/.cache/hf` in a Dockerfile or systemd unit names the same folder for both.
 */
export function expandedPath(value: string, env: NodeJS.ProcessEnv): string {
  const home = value === '~' || value.startsWith('~/') ? os.homedir() + value.slice(1) : value;
  return home.replace(/\$(?:\{([^}]*)\}|([A-Za-z0-9_]+))/g, (written, braced?: string, bare?: string) => {
    const found = env[(braced ?? bare)!];
    return found === undefined ? written : found;
  });
}

/** huggingface_hub's `HF_HOME`: the variable, else `$XDG_CACHE_HOME/huggingface`, else `~/.cache/huggingface`. */
function hfHome(env: NodeJS.ProcessEnv): string {
  return expandedPath(
    env.HF_HOME ?? path.join(env.XDG_CACHE_HOME ?? path.join(os.homedir(), '.cache'), 'huggingface'),
    env,
  );
}

/** huggingface_hub's cache root: `HF_HUB_CACHE`, else the older `HUGGINGFACE_HUB_CACHE`, else `HF_HOME/hub`. */
function hubCache(env: NodeJS.ProcessEnv): string {
  return path.resolve(
    expandedPath(env.HF_HUB_CACHE ?? env.HUGGINGFACE_HUB_CACHE ?? path.join(hfHome(env), 'hub'), env),
  );
}

/** The token `huggingface-cli login` stores: `HF_TOKEN_PATH`, else `HF_HOME/token`. */
function savedToken(env: NodeJS.ProcessEnv): string | undefined {
  const file = env.HF_TOKEN_PATH !== undefined ? expandedPath(env.HF_TOKEN_PATH, env) : path.join(hfHome(env), 'token');
  try {
    return nonEmpty(fs.readFileSync(file, 'utf8'));
  } catch {
    return undefined;
  }
}

/**
 * The endpoint, checked: an http(s) URL without credentials. It is shown in messages only where it holds no `@`:
 * it is printed in every later error, and one with credentials would put the password there (fetch refuses it
 * anyway).
 */
export function checkedEndpoint(endpoint: string, source: string): string {
  const shown = endpoint.includes('@') ? 'one holding an @ (not shown: it may hold a password)' : `'${endpoint}'`;
  let url: URL | undefined;
  try {
    url = new URL(endpoint);
  } catch {
    url = undefined;
  }
  if (url?.username || url?.password) {
    throw new PaceOptionError(
      `${source} must not hold a user name or password (it would be printed in errors): give a token as ` +
        'options.token or HF_TOKEN instead',
    );
  }
  if (!url || (url.protocol !== 'http:' && url.protocol !== 'https:')) {
    throw new PaceOptionError(`${source} must be an http or https URL, got ${shown}`);
  }
  let end = endpoint.length; // (a /\/+$/ would take time quadratic in a run of slashes not at the end)
  while (end > 0 && endpoint[end - 1] === '/') end--;
  return endpoint.slice(0, end);
}

/** The token, checked: characters an HTTP header carries, none of them spaces (never echoed: it is a secret). */
function checkedToken(token: { value: string; source: string } | undefined): string | undefined {
  if (token !== undefined && !/^[\x21-\x7e]+$/.test(token.value)) {
    throw new PaceOptionError(
      `the access token from ${token.source} holds spaces, line breaks or other characters a token cannot: ` +
        'copy it again',
    );
  }
  return token?.value;
}

/**
 * The token to send and where it came from: options, the environment, else the saved login; none for `false`, and
 * none but options.token under HF_HUB_DISABLE_IMPLICIT_TOKEN (as huggingface_hub sends only one passed explicitly).
 */
function givenToken(
  options: HubSettingsOptions,
  env: NodeJS.ProcessEnv,
): { value: string; source: string } | undefined {
  if (options.token === false) return undefined;
  if (options.token === undefined && isTrue(env.HF_HUB_DISABLE_IMPLICIT_TOKEN)) return undefined;
  const sources: [string, string | undefined][] = [
    ['options.token', options.token],
    ['HF_TOKEN', env.HF_TOKEN],
    ['HUGGING_FACE_HUB_TOKEN', env.HUGGING_FACE_HUB_TOKEN],
  ];
  for (const [source, value] of sources) {
    const given = nonEmpty(value);
    if (given !== undefined) return { value: given, source };
  }
  const saved = savedToken(env);
  return saved === undefined ? undefined : { value: saved, source: 'the saved login (HF_TOKEN_PATH or HF_HOME/token)' };
}

/** The settings in force: `options` over the environment. */
export function hubSettings(options: HubSettingsOptions): HubSettings {
  const env = process.env;
  const fromEnvironment = nonEmpty(env.HF_ENDPOINT);
  const endpoint =
    options.endpoint !== undefined
      ? checkedEndpoint(options.endpoint, 'options.endpoint')
      : fromEnvironment !== undefined
        ? checkedEndpoint(fromEnvironment, 'HF_ENDPOINT')
        : DEFAULT_HUB_ENDPOINT;
  const given = givenToken(options, env);
  const token = checkedToken(given);
  const cacheDir = options.cacheDir !== undefined ? path.resolve(options.cacheDir) : hubCache(env);
  // As huggingface_hub (`HF_HUB_OFFLINE or TRANSFORMERS_OFFLINE`, one value): transformers' own switch turns the
  // Hub off too, unless HF_HUB_OFFLINE is set to something (a 0 keeps it on).
  const switchName = nonEmpty(env.HF_HUB_OFFLINE) !== undefined ? 'HF_HUB_OFFLINE' : 'TRANSFORMERS_OFFLINE';
  const offlineFrom = options.offline !== undefined ? 'options.offline' : switchName;
  const inEnvironment = isTrue(env[switchName]);
  const offline = options.offline ?? inEnvironment;
  return {
    endpoint,
    token,
    ...(given && { tokenFrom: given.source }),
    cacheDir,
    offline,
    ...(offline && { offlineFrom }),
    ...(inEnvironment && { offlineInEnvironment: switchName }),
  };
}
