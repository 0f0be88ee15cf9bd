import fs from 'node:fs';
import path from 'node:path';

/**
 * Environment variables the addon is loaded under, each only where the user has not set it, and restored once
 * the load is over (so child processes see the user's environment).
 *
 * UCX_MEM_EVENTS: some libtorch builds (Debian 13's 2.6) link OpenMPI and, through it, UCX, whose memory events
 * hook the process's memory calls as the library loads. Under V8 that crashed about one Node process in a
 * hundred while the addon registered its functions (SIGSEGV in V8's allocator; 21 crashes in 2,320 loads, none
 * in 3,100 with the events off). pace-peft uses neither MPI nor UCX, and UCX reads the variable at load time.
 */
export const addonLoadEnvironment: Readonly<Record<string, string>> = { UCX_MEM_EVENTS: 'no' };

/** Runs `load` with `variables` set in `env` where unset there, then restores `env` as it was, even on a throw. */
export function withLoadEnvironment<T>(
  load: () => T,
  variables: Readonly<Record<string, string>> = addonLoadEnvironment,
  env: NodeJS.ProcessEnv = process.env,
): T {
  const added = Object.keys(variables).filter((name) => env[name] === undefined);
  for (const name of added) env[name] = variables[name];
  try {
    return load();
  } finally {
    for (const name of added) delete env[name];
  }
}

/**
 * The folders of LD_LIBRARY_PATH that hold a libtorch (its libc10): the loader searches them before an addon's own
 * RUNPATH, so the addon takes that libtorch, not its own.
 */
export function libtorchOnLoaderPath(env: NodeJS.ProcessEnv = process.env): string[] {
  return (env.LD_LIBRARY_PATH ?? '')
    .split(':')
    .filter(Boolean)
    .filter((dir) => {
      try {
        return fs.readdirSync(dir).some((name) => /^libc10\.so/.test(name));
      } catch {
        return false;
      }
    })
    .map((dir) => path.resolve(dir));
}
