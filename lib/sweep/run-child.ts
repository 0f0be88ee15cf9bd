// One run of a sweep: `pace fit` in a process forked by the sweep (lib/sweep/launch.ts), with its arguments.
// The IPC channel ties it to the sweep: when the sweep dies (killed, crashed) the channel closes and the run is
// killed too, as a killed sweep's runs would be; its run folder keeps its last checkpoint for the next sweep.
import { fitCommand } from '../cli/commands';

let done = false;
process.on('disconnect', () => {
  if (!done) process.kill(process.pid, 'SIGKILL');
});

fitCommand.run(process.argv.slice(2)).then(
  (code) => {
    done = true;
    process.exitCode = code;
    process.disconnect?.();
  },
  (error: unknown) => {
    done = true;
    process.stderr.write(`pace fit: ${error instanceof Error ? error.message : String(error)}\n`);
    process.exitCode = 1;
    process.disconnect?.();
  },
);
