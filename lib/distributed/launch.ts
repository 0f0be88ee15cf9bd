import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

import { z } from 'zod';

import { PaceOptionError } from '../errors';
import { DISTRIBUTED_FAILURE_STATUS, exitStatusOf } from '../exit-status';
import { MAX_TIMER_MS, parseOptions } from '../options';
import { MAX_WORLD_SIZE, TimeoutSecondsSchema } from './group';

/** More processes than this on one machine is a typo, not a plan (each is a whole Node process and libtorch). */
const MAX_PROCESSES_PER_NODE = 1024;

export const LaunchOptionsSchema = z
  .object({
    /** Processes on this machine (one per GPU, or a share of the CPU each). */
    nprocPerNode: z.number().int().min(1).max(MAX_PROCESSES_PER_NODE),
    /** Machines taking part, and this machine's index among them. */
    nnodes: z.number().int().min(1).default(1),
    nodeRank: z.number().int().min(0).default(0),
    /** Where rank 0 (on node 0) hosts the rendezvous store. */
    masterAddr: z.string().min(1).default('127.0.0.1'),
    /** Its port (default: a free port on a single machine, 29500 across machines). */
    masterPort: z.number().int().min(1).max(65535).optional(),
    /** Seconds a collective may wait for another rank (PACE_DISTRIBUTED_TIMEOUT of the children). */
    timeoutSeconds: TimeoutSecondsSchema.optional(),
    /** Seconds the other ranks get to exit after one failed before SIGTERM, and after SIGTERM before SIGKILL. */
    graceSeconds: z
      .number()
      .min(0)
      .max(Math.floor(MAX_TIMER_MS / 1000))
      .default(5),
  })
  .strict()
  .refine((o) => o.nodeRank < o.nnodes, { message: 'nodeRank must be below nnodes', path: ['nodeRank'] })
  .refine((o) => o.nprocPerNode * o.nnodes <= MAX_WORLD_SIZE, {
    message: `the world (processes per node × nodes) must be at most ${MAX_WORLD_SIZE}, c10d's largest`,
    path: ['nnodes'],
  });

export type LaunchOptions = z.input<typeof LaunchOptionsSchema>;

/** How a launch ended. */
export interface LaunchResult {
  /**
   * 0 when every rank exited with 0; otherwise the failed rank's exit code (128 + signal when killed). The failed
   * rank is the first that failed other than in a collective (exit status 3, a `PaceDistributedError`, which
   * another rank's failure causes), else the first the launcher had to stop after such a failure (the rank the
   * others waited for), else the first.
   */
  exitCode: number;
  /** The rank that failed, and how. */
  failedRank?: number;
  failure?: string;
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

/**
 * Sends `signal` to a rank's whole process group (it leads one of its own): a wrapper (`sh -c`, a script) and
 * the trainer it runs both get it, as they would from a terminal.
 */
function signalRank(child: ChildProcess, signal: NodeJS.Signals): void {
  try {
    if (child.pid !== undefined) process.kill(-child.pid, signal);
  } catch {
    child.kill(signal); // the group is gone already, or was never made
  }
}

function describeExit(code: number | null, signal: NodeJS.Signals | null): { text: string; exitCode: number } {
  if (signal) return { text: `was killed by ${signal}`, exitCode: exitStatusOf(signal) };
  return { text: `exited with code ${code}`, exitCode: code ?? 1 };
}

/** The signal an interrupt passes on to the ranks: the one the launcher got (the abort's reason), else SIGINT. */
function signalToPassOn(reason: unknown): NodeJS.Signals {
  return typeof reason === 'string' && reason.startsWith('SIG') && reason in os.constants.signals
    ? (reason as NodeJS.Signals)
    : 'SIGINT';
}

/**
 * Runs `command` once per local rank with the environment torchrun sets (RANK, LOCAL_RANK, WORLD_SIZE,
 * LOCAL_WORLD_SIZE, MASTER_ADDR, MASTER_PORT), and watches the processes: when one fails, the others are stopped
 * (after a grace period in which they can fail on their own, SIGTERM, then SIGKILL) and the result names the rank.
 * On one machine the ranks meet in a file of a fresh private folder (PACE_RENDEZVOUS_FILE, removed at the end)
 * rather than on MASTER_PORT, which TCP's rendezvous would open on every network interface.
 *
 * Each rank runs in a process group of its own (its stdin is not the terminal's), so a terminal's Ctrl-C reaches
 * the launcher alone: `signal` passes its reason (SIGINT, SIGTERM; SIGINT for any other) on to every rank, once,
 * and ranks that then stop with that signal's status (or are killed by it) have not failed: the result is that
 * status. `kill` kills every rank at once (SIGKILL). The children hold an IPC channel to the launcher; `pace`
 * commands exit when it closes, so killing the launcher stops the whole run.
 */
export async function launch(
  command: string[],
  options: LaunchOptions,
  {
    signal,
    kill,
    log = (line: string) => process.stderr.write(`${line}\n`),
  }: { signal?: AbortSignal; kill?: AbortSignal; log?: (line: string) => void } = {},
): Promise<LaunchResult> {
  const o = parseOptions(LaunchOptionsSchema, options, 'options');
  if (command.length === 0) throw new PaceOptionError('launch needs a command to run on every rank');
  const worldSize = o.nprocPerNode * o.nnodes;
  const threadsPerProcess = Math.max(1, Math.floor(os.availableParallelism() / o.nprocPerNode));
  const masterPort = o.masterPort ?? (o.nnodes === 1 ? await freePort() : 29500);
  const rendezvousFolder =
    o.nnodes === 1 ? fs.mkdtempSync(path.join(fs.realpathSync(os.tmpdir()), 'pace-rendezvous-')) : undefined;
  const children: ChildProcess[] = [];
  let result: LaunchResult | undefined;
  const timers: NodeJS.Timeout[] = [];
  const running = () => children.filter((child) => child.exitCode === null && child.signalCode === null);
  const killAll = () => running().forEach((child) => signalRank(child, 'SIGKILL'));
  // After a failure the others first get the grace period to fail on their own (a rank waiting on the dead one
  // fails at once and says why), then SIGTERM, then SIGKILL after another grace period.
  const stopOthers = () => {
    if (timers.length > 0) return;
    const grace = o.graceSeconds * 1000;
    const stop = () => {
      stoppedByLauncher = true;
      for (const child of running()) signalRank(child, 'SIGTERM');
      timers.push(setTimeout(killAll, grace));
    };
    timers.push(setTimeout(stop, grace));
  };
  let interrupt: NodeJS.Signals | undefined;
  let interruptedStatus: number | undefined;
  let stoppedWithOthers = false;
  let collectiveFailure: LaunchResult | undefined;
  let stoppedByLauncher = false;
  let lingering: LaunchResult | undefined;
  const onInterrupt = () => {
    interrupt = signalToPassOn(signal?.reason);
    for (const child of running()) signalRank(child, interrupt as NodeJS.Signals);
  };
  // What a rank does when asked to stop: exit with the signal's status, or die of it (or of the kill).
  const stoppedAsAsked = (code: number | null, exitSignal: NodeJS.Signals | null) =>
    interrupt !== undefined &&
    (code === exitStatusOf(interrupt) ||
      exitSignal === interrupt ||
      (kill?.aborted === true && exitSignal === 'SIGKILL'));
  signal?.addEventListener('abort', onInterrupt);
  kill?.addEventListener('abort', killAll);
  try {
    const exits = Array.from({ length: o.nprocPerNode }, (_, localRank) => {
      const rank = o.nodeRank * o.nprocPerNode + localRank;
      const env: NodeJS.ProcessEnv = { ...process.env };
      delete env.PACE_RENDEZVOUS_FILE; // across machines the ranks meet on MASTER_PORT, whatever this shell says
      const child = spawn(command[0], command.slice(1), {
        detached: true,
        stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
        env: {
          ...env,
          RANK: String(rank),
          LOCAL_RANK: String(localRank),
          WORLD_SIZE: String(worldSize),
          LOCAL_WORLD_SIZE: String(o.nprocPerNode),
          GROUP_RANK: String(o.nodeRank),
          MASTER_ADDR: o.masterAddr,
          MASTER_PORT: String(masterPort),
          PACE_LAUNCHER_PID: String(process.pid),
          ...(rendezvousFolder !== undefined && { PACE_RENDEZVOUS_FILE: path.join(rendezvousFolder, 'store') }),
          ...(o.timeoutSeconds !== undefined && { PACE_DISTRIBUTED_TIMEOUT: String(o.timeoutSeconds) }),
          // Each process a share of the CPUs, unless the user chose (as torchrun sets OMP_NUM_THREADS).
          ...(!process.env.PACE_NUM_THREADS &&
            !process.env.OMP_NUM_THREADS && { PACE_NUM_THREADS: String(threadsPerProcess) }),
        },
      });
      children.push(child);
      return new Promise<void>((resolve) => {
        const finish = (code: number | null, exitSignal: NodeJS.Signals | null, error?: Error) => {
          // Ended by the launcher's own stop: dead of its SIGTERM or SIGKILL, or exiting 143 as a rank that handles
          // the SIGTERM does (pace fit), not stopping of its own accord.
          const endedByLauncher =
            stoppedByLauncher &&
            error === undefined &&
            (exitSignal === 'SIGTERM' || exitSignal === 'SIGKILL' || code === 143);
          if (error === undefined && stoppedAsAsked(code, exitSignal)) {
            interruptedStatus ??= describeExit(code, exitSignal).exitCode;
          } else if (
            error === undefined &&
            interrupt === undefined &&
            !endedByLauncher &&
            (code === 130 || code === 143)
          ) {
            // Stopped with the other ranks: an interrupt on another node, agreed over the group. Not a failure; the
            // ranks that agreed end on their own within the grace period, any other is stopped after it.
            interruptedStatus ??= code;
            stoppedWithOthers = true;
            stopOthers();
          } else if (stoppedWithOthers && endedByLauncher) {
            // a rank that did not stop with the others, ended by the launcher after the grace period: part of the stop
          } else if (error === undefined && interrupt !== undefined && code !== 0 && result === undefined) {
            // Ended otherwise once the interrupt was passed on: most likely by a peer's stop (a rank still
            // loading dies of the signal, and the ones already training fail to reach it). Said, but not a failure.
            log(
              `pace launch: rank ${rank} (pid ${child.pid ?? '-'}) ${describeExit(code, exitSignal).text} after the interrupt`,
            );
            interruptedStatus ??= exitStatusOf(interrupt);
          } else if (error === undefined && code === DISTRIBUTED_FAILURE_STATUS && result === undefined) {
            // A collective failed: most often another rank's failure, whose own exit can come a moment later.
            // Named the cause only if no rank fails otherwise.
            const failure = `rank ${rank} (pid ${child.pid ?? '-'}) ${describeExit(code, exitSignal).text}`;
            if (collectiveFailure === undefined) {
              log(`pace launch: ${failure} (a collective failed); stopping the other ranks`);
              stopOthers();
            }
            collectiveFailure ??= { exitCode: code, failedRank: rank, failure };
          } else if (stoppedByLauncher && collectiveFailure !== undefined && result === undefined) {
            // Ended by the launcher's stop after a collective failure: the others failed waiting for a rank, and
            // this one was still not done a grace period later, so it is the likeliest they waited for (hung, or
            // busy outside any collective). Named the cause unless a rank fails otherwise.
            const stopped: LaunchResult = {
              exitCode: collectiveFailure.exitCode,
              failedRank: rank,
              failure:
                `rank ${rank} (pid ${child.pid ?? '-'}) did not end within ${o.graceSeconds} s of ` +
                `rank ${collectiveFailure.failedRank}'s failed collective (hung, or busy outside ` +
                'the collectives: most likely the rank it waited for); stopped by the launcher',
            };
            lingering ??= stopped;
            log(`pace launch: ${stopped.failure}`); // each such rank said, the first named the cause
          } else if ((error !== undefined || code !== 0) && result === undefined) {
            const how = error
              ? { text: `could not start: ${error.message}`, exitCode: 127 }
              : describeExit(code, exitSignal);
            result = {
              exitCode: how.exitCode,
              failedRank: rank,
              failure: `rank ${rank} (pid ${child.pid ?? '-'}) ${how.text}`,
            };
            log(`pace launch: ${result.failure}${collectiveFailure ? '' : '; stopping the other ranks'}`);
            stopOthers();
          }
          resolve();
        };
        child.once('error', (error) => finish(null, null, error));
        child.once('exit', (code, exitSignal) => finish(code, exitSignal));
      });
    });
    if (signal?.aborted) onInterrupt(); // aborted before the ranks existed: they stop at once
    await Promise.all(exits);
  } finally {
    signal?.removeEventListener('abort', onInterrupt);
    kill?.removeEventListener('abort', killAll);
    timers.forEach((timer) => clearTimeout(timer));
    if (rendezvousFolder !== undefined) fs.rmSync(rendezvousFolder, { recursive: true, force: true });
  }
  return result ?? lingering ?? collectiveFailure ?? { exitCode: interruptedStatus ?? 0 };
}
