#!/usr/bin/env node
import { commands, helpRequested, UsageError } from './cli/commands';
import { dropOutputWhenClosed, err, out, shownOnTerminal } from './cli/output';
import { exitWithLauncher } from './distributed/launcher-link';
import { DISTRIBUTED_FAILURE_STATUS } from './exit-status';

const usage = `Usage: pace <command> [options]   (pace <command> --help for its options; pace --version)

Commands:
${Object.entries(commands)
  .map(([name, command]) => `  ${name.padEnd(8)}${command.summary}`)
  .join('\n')}`;

/** The command of that name; not a property every object has (`constructor`, `toString`). */
const commandNamed = (name: string) => (Object.hasOwn(commands, name) ? commands[name] : undefined);

async function main(argv: string[]): Promise<number> {
  dropOutputWhenClosed();
  exitWithLauncher();
  const [name, ...rest] = argv;
  if (name === undefined) {
    err(`${usage}\n`);
    return 2;
  }
  if (name === 'help' || name === '--help' || name === '-h') {
    // `pace help fit` is `pace fit --help`
    const asked = name === 'help' && rest.length > 0 ? commandNamed(rest[0]) : undefined;
    if (name === 'help' && rest.length > 0 && !asked) {
      err(`pace: unknown command '${rest[0]}'\n\n${usage}\n`);
      return 2;
    }
    out(asked ? `Usage: ${asked.usage}` : usage);
    return 0;
  }
  if (name === '--version' || name === '-v') {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    out((require('../package.json') as { version: string }).version);
    return 0;
  }
  const command = commandNamed(name);
  if (!command) {
    err(`pace: unknown command '${name}'\n\n${usage}\n`);
    return 2;
  }
  if (helpRequested(rest)) {
    out(`Usage: ${command.usage}`);
    return 0;
  }
  try {
    return await command.run(rest);
  } catch (error) {
    const usageError = error instanceof UsageError || (error as { code?: string }).code?.startsWith('ERR_PARSE_ARGS');
    err(`pace ${name}: ${shownOnTerminal((error as Error).message)}\n`);
    if (usageError) err(`\nUsage: ${command.usage}\n`);
    if (usageError) return 2;
    return (error as { code?: string }).code === 'PACE_DISTRIBUTED' ? DISTRIBUTED_FAILURE_STATUS : 1;
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (error: unknown) => {
    err(`pace: ${shownOnTerminal(error instanceof Error ? error.message : String(error))}\n`);
    process.exitCode = 1;
  },
);
