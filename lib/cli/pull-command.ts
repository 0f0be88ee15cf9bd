import { parseArgs } from 'node:util';

import { listPretrained, type PretrainedInfo } from '../hub/catalog';
import { downloadPretrained, DownloadPretrainedOptionsSchema } from '../hub/download';
import { checkRevision, parsePretrainedName } from '../hub/names';
import { checkedEndpoint } from '../hub/settings';
import { PaceOptionError } from '../errors';
import { out } from './output';
import { watchStopSignals } from './signals';
import { parseWithFlags, UsageError, type Command, type Flags } from './usage';

const PULL_FLAGS = {
  revision: { type: 'string' },
  'cache-dir': { type: 'string' },
  endpoint: { type: 'string' },
  offline: { type: 'boolean' },
  json: { type: 'boolean', default: false },
  quiet: { type: 'boolean', default: false },
  list: { type: 'boolean', default: false },
} as const satisfies Flags;

export const pullCommand: Command = {
  flags: PULL_FLAGS,
  summary: 'Downloads pretrained weights by name into the Hugging Face cache',
  usage: `pace pull NAME [--revision REV] [--cache-dir DIR] [--endpoint URL] [--offline] [--json] [--quiet]
  Downloads pretrained weights by name into the Hugging Face cache and prints where they are.
  NAME: timm's architecture.tag (vit_base_patch16_224.augreg_in21k), an architecture alone (timm's default
  tag), or hf-hub:org/name[@revision]; pace pull --list names the known weights (* marks the PACE paper's).
  A token for gated repositories comes from HF_TOKEN; HF_ENDPOINT, HF_HUB_CACHE and HF_HUB_OFFLINE are honoured.
  Ctrl-C or SIGTERM stops the transfer and removes its partial file (exit 130 or 143).`,
  async run(args) {
    const { values, positionals } = parseArgs({ args, allowPositionals: true, options: PULL_FLAGS });
    if (values.list) {
      if (positionals.length > 0) throw new UsageError('--list takes no name');
      const ignored = (['revision', 'cache-dir', 'endpoint', 'offline', 'quiet'] as const).filter(
        (flag) => values[flag] !== undefined && values[flag] !== false,
      );
      if (ignored.length > 0) {
        throw new UsageError(`--list names the known weights: it takes no --${ignored.join(', --')} (only --json)`);
      }
      const known = listPretrained();
      const width = known.reduce((widest, entry) => Math.max(widest, entry.name.length), 0);
      const line = (entry: PretrainedInfo) =>
        `${entry.paper ? '*' : ' '} ${entry.name.padEnd(width)}  ${entry.description}`;
      out(values.json ? JSON.stringify(known, null, 2) : known.map(line).join('\n'));
      return 0;
    }
    if (positionals.length !== 1) throw new UsageError('give one pretrained name (pace pull --list names them)');
    const flags = { revision: '--revision', cacheDir: '--cache-dir', endpoint: '--endpoint' } as const;
    const given = { revision: values.revision, cacheDir: values['cache-dir'], endpoint: values.endpoint };
    parseWithFlags(DownloadPretrainedOptionsSchema, given, 'pace pull', (key) => flags[key as keyof typeof flags]);
    checkPullFlags(positionals[0], values.revision, values.endpoint);
    using stop = watchStopSignals();
    let weights;
    try {
      weights = await downloadPretrained(positionals[0], {
        revision: values.revision,
        cacheDir: values['cache-dir'],
        endpoint: values.endpoint,
        offline: values.offline,
        progress: values.quiet ? false : 'auto',
        signal: stop.signal,
      });
    } catch (error) {
      if (!stop.signal.aborted || error !== stop.signal.reason) throw error;
      const reason = String(stop.signal.reason);
      out(
        values.json
          ? JSON.stringify({ name: positionals[0], interrupted: reason }, null, 2)
          : `pull of ${positionals[0]} interrupted by ${reason}: the file in transfer was not cached`,
      );
      return stop.exitCode() as number;
    }
    if (values.json) {
      out(JSON.stringify(weights, null, 2));
    } else {
      out(`${weights.name}: ${weights.repo}@${weights.commit}${weights.cached ? ' (already in the cache)' : ''}`);
      out(`weights: ${weights.file}`);
      out(`config:  ${weights.configFile}`);
    }
    return 0;
  },
};

/** The checks of --revision and --endpoint past their schema's, as usage errors naming the flag (exit 2). */
function checkPullFlags(name: string, revision: string | undefined, endpoint: string | undefined): void {
  const asUsage = (flag: string, check: () => unknown) => {
    try {
      check();
    } catch (error) {
      if (!(error instanceof PaceOptionError)) throw error;
      throw new UsageError(error.message.startsWith(flag) ? error.message : `${flag}: ${error.message}`);
    }
  };
  if (revision !== undefined) {
    asUsage('--revision', () => checkRevision(revision, name));
    let named: string | undefined;
    try {
      named = parsePretrainedName(name).revision;
    } catch {
      named = undefined; // an unknown name: said by the pull itself
    }
    if (named !== undefined && named !== revision) {
      throw new UsageError(`--revision '${revision}' disagrees with the revision the name gives, '${named}'`);
    }
  }
  if (endpoint !== undefined) asUsage('--endpoint', () => checkedEndpoint(endpoint, '--endpoint'));
}
