// The tie between a rank and the `pace launch` process that started it.

let tied = false;

/**
 * In a process started by `pace launch`: end when the launcher goes away (its IPC channel closes), so a killed
 * launcher never leaves ranks behind waiting on each other or training on alone. At once: `process.exit` would
 * wait for the native epoch running on a worker thread (minutes), and every file this process writes is written
 * atomically, so its run folder keeps its last checkpoint. The channel does not keep the process alive. Called by
 * every `pace` command and by `initDistributed` (a script of one's own), once.
 */
export function exitWithLauncher(): void {
  if (tied || !process.env.PACE_LAUNCHER_PID || !process.channel) return;
  tied = true;
  process.channel.unref();
  process.once('disconnect', () => {
    process.stderr.write(`pace: rank ${process.env.RANK ?? '?'}: the launcher exited; stopping\n`);
    process.kill(process.pid, 'SIGKILL');
  });
}
