import { parseArgs } from 'node:util';

import { launch } from '../distributed/launch';
import { numberFlag, UsageError, type Command } from './usage';

export const launchCommand: Command = {
  usage: `pace launch --nproc-per-node N [--nnodes M --node-rank K --master-addr HOST] [--master-port P] [--timeout S] -- COMMAND...
  Runs COMMAND once per rank with torchrun's environment (RANK, LOCAL_RANK, WORLD_SIZE, MASTER_ADDR,
  MASTER_PORT), e.g. \`pace launch --nproc-per-node 2 -- pace fit --config run.json\`; when one rank fails
  the others are stopped and the exit status and message name the rank.`,
  async run(args) {
    const split = args.indexOf('--');
    if (split < 0 || split === args.length - 1) throw new UsageError('give the command to run after --');
    const { values } = parseArgs({
      args: args.slice(0, split),
      options: {
        'nproc-per-node': { type: 'string' },
        nnodes: { type: 'string' },
        'node-rank': { type: 'string' },
        'master-addr': { type: 'string' },
        'master-port': { type: 'string' },
        timeout: { type: 'string' },
      },
    });
    if (values['nproc-per-node'] === undefined) throw new UsageError('--nproc-per-node is required');
    const optional = (name: string, text: string | undefined) =>
      text === undefined ? undefined : numberFlag(name, text);
    const controller = new AbortController();
    const stop = () => controller.abort();
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
    try {
      const result = await launch(
        args.slice(split + 1),
        {
          nprocPerNode: numberFlag('--nproc-per-node', values['nproc-per-node']),
          nnodes: optional('--nnodes', values.nnodes),
          nodeRank: optional('--node-rank', values['node-rank']),
          masterAddr: values['master-addr'],
          masterPort: optional('--master-port', values['master-port']),
          timeoutSeconds: optional('--timeout', values.timeout),
        },
        { signal: controller.signal },
      );
      return result.exitCode;
    } finally {
      process.removeListener('SIGINT', stop);
      process.removeListener('SIGTERM', stop);
    }
  },
};
