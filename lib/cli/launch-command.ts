import { parseArgs } from 'node:util';

import { launch, LaunchOptionsSchema, type LaunchOptions } from '../distributed/launch';
import { watchStopSignals } from './signals';
import { numberFlag, parseWithFlags, UsageError, type Command, type Flags } from './usage';

/** The launcher's flags and the option each sets. */
const FLAGS: Record<string, keyof LaunchOptions> = {
  'nproc-per-node': 'nprocPerNode',
  nnodes: 'nnodes',
  'node-rank': 'nodeRank',
  'master-addr': 'masterAddr',
  'master-port': 'masterPort',
  timeout: 'timeoutSeconds',
};

const LAUNCH_FLAGS: Flags = Object.fromEntries(Object.keys(FLAGS).map((flag) => [flag, { type: 'string' as const }]));

/** pace launch's own flags (those before `--`), checked as launch() checks its options, errors naming the flag. */
function launchOptions(args: string[]): LaunchOptions {
  const { values } = parseArgs({ args, options: LAUNCH_FLAGS });
  if (values['nproc-per-node'] === undefined) throw new UsageError('--nproc-per-node is required');
  const options: Record<string, unknown> = {};
  for (const [flag, key] of Object.entries(FLAGS)) {
    const text = values[flag] as string | undefined;
    if (text !== undefined) options[key] = key === 'masterAddr' ? text : numberFlag(`--${flag}`, text);
  }
  const nnodes = (options.nnodes as number | undefined) ?? 1;
  if (typeof options.nodeRank === 'number' && options.nodeRank >= nnodes) {
    throw new UsageError(`--node-rank must be below --nnodes (${nnodes})`);
  }
  const flagOf = (field: string) => {
    const flag = Object.keys(FLAGS).find((name) => FLAGS[name] === field);
    return flag === undefined ? undefined : `--${flag}`;
  };
  parseWithFlags(LaunchOptionsSchema, options, 'pace launch', flagOf);
  return options as LaunchOptions;
}

export const launchCommand: Command = {
  flags: LAUNCH_FLAGS,
  summary: 'Runs a command once per rank (data-parallel training), as torchrun does',
  usage: `pace launch --nproc-per-node N [--nnodes M --node-rank K --master-addr HOST] [--master-port P] [--timeout S] -- COMMAND...
  Runs COMMAND once per rank with torchrun's environment (RANK, LOCAL_RANK, WORLD_SIZE, MASTER_ADDR,
  MASTER_PORT; on one machine also PACE_RENDEZVOUS_FILE, a file of a private folder the ranks meet in instead of
  on the port), e.g. \`pace launch --nproc-per-node 2 -- pace fit --config run.json\`; when one rank fails
  the others are stopped and the exit status and message name the rank. Each rank runs in a process group of
  its own: Ctrl-C or SIGTERM reaches the ranks once, passed on by the launcher, and they stop cleanly (exit 130
  or 143); a second one kills them.`,
  async run(args) {
    const split = args.indexOf('--');
    if (split < 0 || split === args.length - 1) throw new UsageError('give the command to run after --');
    const options = launchOptions(args.slice(0, split));
    const kill = new AbortController();
    using stop = watchStopSignals(() => kill.abort());
    const result = await launch(args.slice(split + 1), options, { signal: stop.signal, kill: kill.signal });
    return result.exitCode;
  },
};
