import { z } from 'zod';

import { PaceBusyError, PaceOptionError } from '../errors';
import { nativeAddon } from '../native';
import { parseOptions } from '../options';
import { exitWithLauncher } from './launcher-link';

/** Ranks are C ints in c10d: a rank, and the number of ranks, as given or read from the environment. */
export const MAX_WORLD_SIZE = 2 ** 31 - 1;
const RankSchema = z
  .number()
  .int()
  .min(0)
  .max(MAX_WORLD_SIZE - 1);
const WorldSizeSchema = z.number().int().min(1).max(MAX_WORLD_SIZE);
/**
 * A collective's timeout: from a millisecond (c10d counts whole milliseconds, so less would be none) to about 30
 * years (past that its millisecond count overflows).
 */
export const TimeoutSecondsSchema = z.number().min(0.001).max(1e9);

/** What `initDistributed` takes; each field left out is read from the environment torchrun and `pace launch` set. */
export const DistributedOptionsSchema = z
  .object({
    /**
     * `gloo` (CPU tensors, any network), `nccl` (CUDA builds with NCCL, one GPU per local rank) or `auto` (nccl
     * when every rank's build has it and a GPU for its local rank, else gloo: rank 0 decides for all at the
     * rendezvous). Ranks that name different backends are refused there, naming two of them.
     */
    backend: z.enum(['gloo', 'nccl', 'auto']).default('auto'),
    /** This process's rank in [0, worldSize) (default: `RANK`). */
    rank: RankSchema.optional(),
    /** The number of processes training together (default: `WORLD_SIZE`). */
    worldSize: WorldSizeSchema.optional(),
    /** The host of rank 0's rendezvous store (default: `MASTER_ADDR`, else 127.0.0.1). */
    masterAddr: z.string().min(1).optional(),
    /** Its port (default: `MASTER_PORT`, else 29500). */
    masterPort: z.number().int().min(1).max(65535).optional(),
    /**
     * A file in which ranks all on this machine meet instead of at `masterAddr:masterPort`, so that the rendezvous
     * opens no port (TCP's listens on every interface); the file must be one no earlier group used, in a folder
     * only this user can write (default: `PACE_RENDEZVOUS_FILE`, which `pace launch` on one machine sets to a fresh one).
     */
    rendezvousFile: z.string().min(1).optional(),
    /**
     * How long a collective (or the rendezvous) may wait for the other ranks before failing with a
     * PaceDistributedError (default: `PACE_DISTRIBUTED_TIMEOUT` seconds, else 300).
     */
    timeoutSeconds: TimeoutSecondsSchema.optional(),
  })
  .strict();

export type DistributedOptions = z.input<typeof DistributedOptionsSchema>;

/** The process group this process belongs to. */
export interface DistributedGroup {
  rank: number;
  worldSize: number;
  /** This process's index on its machine (`LOCAL_RANK`; the rank when unset). */
  localRank: number;
  backend: string;
  timeoutSeconds: number;
}

function fromEnvironment(name: string, schema: z.ZodType<number>): number | undefined {
  const text = process.env[name];
  if (text === undefined || text === '') return undefined;
  const parsed = schema.safeParse(Number(text));
  if (!parsed.success) {
    throw new PaceOptionError(`the environment variable ${name}='${text}' is not a valid value`);
  }
  return parsed.data;
}

/**
 * Under torchrun, its agent already hosts the store on MASTER_PORT (it says so with
 * TORCHELASTIC_USE_AGENT_STORE=True): every rank then connects to it, rank 0 included, with its keys under the
 * attempt's prefix, as PyTorch's ranks do. Rank 0 hosting its own store there would find the port taken.
 */
function agentStorePrefix(): string | undefined {
  if (process.env.TORCHELASTIC_USE_AGENT_STORE !== 'True') return undefined;
  const attempt = fromEnvironment('TORCHELASTIC_RESTART_COUNT', z.number().int().min(0)) ?? 0;
  return `/worker/attempt_${attempt}`;
}

/** True when the environment describes a multi-process launch (WORLD_SIZE > 1, as torchrun and `pace launch` set). */
export function launchedDistributed(): boolean {
  return (fromEnvironment('WORLD_SIZE', z.number().int().min(1)) ?? 1) > 1;
}

/**
 * Joins the process group of a data-parallel run: rank 0 hosts the rendezvous store, every rank connects, and the
 * promise settles once all have joined. Trainers created afterwards are data-parallel (see README, "Data-parallel
 * training"). One group per process.
 */
export async function initDistributed(options: DistributedOptions = {}): Promise<DistributedGroup> {
  const o = parseOptions(DistributedOptionsSchema, options, 'options');
  const worldSize = o.worldSize ?? fromEnvironment('WORLD_SIZE', WorldSizeSchema) ?? 1;
  const rank = o.rank ?? fromEnvironment('RANK', RankSchema);
  if (rank === undefined && worldSize > 1) {
    // Rank 0 by default would collide with the real rank 0 at the rendezvous, and look like a port in use.
    throw new PaceOptionError(
      `a world of ${worldSize} processes needs this process's rank: set RANK (0 to ${worldSize - 1}) or options.rank`,
    );
  }
  if (rank !== undefined && rank >= worldSize)
    throw new PaceOptionError(`rank ${rank} is outside a world of ${worldSize} processes`);
  const localRank = fromEnvironment('LOCAL_RANK', z.number().int().min(0)) ?? rank ?? 0;
  exitWithLauncher(); // before the rendezvous, which a killed launcher's other ranks would never complete
  const group = await nativeAddon().initDistributed({
    backend: o.backend,
    rank: rank ?? 0,
    worldSize,
    localRank,
    masterAddr: o.masterAddr ?? process.env.MASTER_ADDR ?? '127.0.0.1',
    masterPort: o.masterPort ?? fromEnvironment('MASTER_PORT', z.number().int().min(1).max(65535)) ?? 29500,
    rendezvousFile: o.rendezvousFile ?? (process.env.PACE_RENDEZVOUS_FILE || undefined),
    // (the launcher's store is at MASTER_ADDR:MASTER_PORT: an address given here is another store)
    agentStorePrefix: o.masterAddr === undefined && o.masterPort === undefined ? agentStorePrefix() : undefined,
    timeoutSeconds: o.timeoutSeconds ?? fromEnvironment('PACE_DISTRIBUTED_TIMEOUT', TimeoutSecondsSchema) ?? 300,
  });
  return { ...group, localRank };
}

/** The group this process has joined, or undefined in a single process. */
export function distributedGroup(): DistributedGroup | undefined {
  const group = nativeAddon().distributedGroup();
  if (!group) return undefined;
  return { ...group, localRank: fromEnvironment('LOCAL_RANK', z.number().int().min(0)) ?? group.rank };
}

let dataParallelEpoch = false;

/**
 * @internal Marks a data-parallel fit's epoch, its steps and their onBatchEnd calls, until the returned function is
 * called. A batch's callback may run during the native epoch on one rank and after it on another, so a collective
 * call from it would be refused (the group's claim) on some ranks and made on others: it is refused throughout.
 */
export function enterDataParallelEpoch(): () => void {
  dataParallelEpoch = true;
  return () => {
    dataParallelEpoch = false;
  };
}

/** @internal Refuses a call that makes collectives while a data-parallel fit's epoch runs its steps. */
export function refuseDuringDataParallelEpoch(what: string): void {
  if (!dataParallelEpoch) return;
  throw new PaceBusyError(
    `${what} cannot run during a data-parallel fit's epoch (from an onBatchEnd callback, say): its collectives ` +
      "would meet the epoch's on some ranks and not others; make it from onEpochEnd",
  );
}

/** Waits until every rank has called it. */
export async function distributedBarrier(what = 'a barrier'): Promise<void> {
  refuseDuringDataParallelEpoch(`the barrier '${what}'`);
  await nativeAddon().distributedBarrier(what);
}

/**
 * @internal Collective: rejects on every rank, naming the first setting that differs and the ranks that differ,
 * unless every rank gave the same settings (`[name, value]` pairs, in the same order).
 */
export async function agreeAcrossRanks(settings: [string, string][], what: string): Promise<void> {
  await nativeAddon().distributedAgree(settings, what);
}

/**
 * @internal Collective: every rank's `value` (an integer), in rank order. Every rank calls it at the same point of
 * its work; `what` names that point in a timeout's error.
 */
export async function gatherAcrossRanks(value: number, what: string): Promise<number[]> {
  return nativeAddon().distributedGather(value, what);
}

/** Leaves the group; trainers made in it should not train afterwards. */
export function destroyDistributed(): void {
  nativeAddon().destroyDistributed();
}
