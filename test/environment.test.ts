// The environment variables README's Performance section documents, each read once when the addon loads: so
// each case runs a fresh Node process on the built package (dist/) with the variable set.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

import { withLoadEnvironment } from '../lib/install/load-environment';
import { repoRoot } from './support/paths';

const documented = ['PACE_NUM_THREADS', 'OMP_NUM_THREADS', 'PACE_CPU_CACHE', 'UCX_MEM_EVENTS'];

/** Runs `body` (an async function body with `pace` = the built package) in a child process; returns its JSON. */
function inChild(body: string, env: Record<string, string> = {}, prefix: string[] = [], before = '') {
  const base = Object.fromEntries(Object.entries(process.env).filter(([key]) => !documented.includes(key)));
  const script = `${before}
const pace = require(${JSON.stringify(path.join(repoRoot, 'dist'))});
(async () => { ${body} })().then((r) => console.log(JSON.stringify(r)), (e) => { console.error(e); process.exit(1); });`;
  const [command, ...args] = [...prefix, process.execPath, '-e', script];
  const result = spawnSync(command, args, { encoding: 'utf8', env: { ...base, ...env } });
  expect({ status: result.status, stderr: result.stderr }).toMatchObject({ status: 0 });
  return JSON.parse(result.stdout);
}

describe('threads: PACE_NUM_THREADS, else OMP_NUM_THREADS, else every CPU the process may use', () => {
  // Bug caught: a variable not read, read in the wrong order of precedence, or applied to the JS thread only
  // (measureGemm runs on a libuv worker thread and reports the intra-op threads it found there). The values
  // are chosen unlike this machine's CPU count, so the default cannot pass for them.
  const probe = `const t = pace.threads();
return { intraOp: t.intraOp, available: t.available, worker: (await pace.measureGemm({ size: 32, seconds: 0 })).threads };`;

  test('PACE_NUM_THREADS sets the intra-op threads of every thread, and wins over OMP_NUM_THREADS', () => {
    const available = inChild(probe).available;
    const threads = available + 3;
    expect(inChild(probe, { PACE_NUM_THREADS: String(threads) })).toMatchObject({ intraOp: threads, worker: threads });
    expect(inChild(probe, { PACE_NUM_THREADS: String(threads), OMP_NUM_THREADS: String(threads + 1) })).toMatchObject({
      intraOp: threads,
      worker: threads,
    });
  });

  test('OMP_NUM_THREADS applies without PACE_NUM_THREADS', () => {
    const threads = inChild(probe).available + 2;
    expect(inChild(probe, { OMP_NUM_THREADS: String(threads) })).toMatchObject({ intraOp: threads, worker: threads });
  });

  test('with neither, every CPU of the affinity mask (one under taskset -c)', () => {
    const free = inChild(probe);
    expect(free.intraOp).toBe(free.available);
    expect(free.worker).toBe(free.available);
    // The first CPU this process may run on (CPU 0 need not be one of them in a container).
    const allowed = /Cpus_allowed_list:\s*(\d+)/.exec(fs.readFileSync('/proc/self/status', 'utf8'));
    const pinned = inChild(probe, {}, ['taskset', '-c', allowed?.[1] ?? '0']);
    expect(pinned).toEqual({ intraOp: 1, available: 1, worker: 1 });
  });
});

describe('PACE_CPU_CACHE=0 turns the CPU block cache off', () => {
  // Bug caught: the variable ignored (the cache keeps freed blocks anyway) — or the cache off by default.
  // An 8 MiB clone freed, then another: with the cache the second is served from the first's block.
  const probe = `const a = pace.tensor(new Float32Array(1 << 21));
const before = pace.memoryStats();
a.clone().dispose();
const freed = pace.memoryStats();
a.clone().dispose();
const again = pace.memoryStats();
a.dispose();
return { kept: freed.cpuCacheBytes - before.cpuCacheBytes, hits: again.cpuCacheHits - freed.cpuCacheHits,
  misses: again.cpuCacheMisses - before.cpuCacheMisses };`;

  test('unset (or any other value) the freed 8 MiB block is kept and reused; with 0 nothing is cached', () => {
    expect(inChild(probe)).toEqual({ kept: 8 << 20, hits: 1, misses: 1 });
    expect(inChild(probe, { PACE_CPU_CACHE: '1' })).toEqual({ kept: 8 << 20, hits: 1, misses: 1 });
    expect(inChild(probe, { PACE_CPU_CACHE: '0' })).toEqual({ kept: 0, hits: 0, misses: 0 });
  });
});

describe('UCX_MEM_EVENTS=no while the addon loads, unless set; the environment restored after', () => {
  // Bug caught: the variable not set when the shared library loads (UCX reads it then: Debian 13's libtorch 2.6
  // crashed about one Node process in a hundred there), a user's value overridden, or ours left behind for the
  // process's children. The child records the variable as Node's .node loader runs on the addon (sharp's own
  // addon loads first, under the user's environment).
  const recordAtLoad = `const Module = require('node:module');
const loadNative = Module._extensions['.node'];
const seen = [];
Module._extensions['.node'] = (module, file) => {
  if (file.endsWith('/pace_peft.node')) seen.push(process.env.UCX_MEM_EVENTS ?? null);
  return loadNative(module, file);
};`;
  const probe = `pace.threads();
return { seenAtLoad: seen, after: process.env.UCX_MEM_EVENTS ?? null };`;

  test('unset: "no" during the load, unset again after', () => {
    expect(inChild(probe, {}, [], recordAtLoad)).toEqual({ seenAtLoad: ['no'], after: null });
  });

  test("a user's value is left as it is", () => {
    expect(inChild(probe, { UCX_MEM_EVENTS: 'yes' }, [], recordAtLoad)).toEqual({ seenAtLoad: ['yes'], after: 'yes' });
  });
});

test('the load environment is restored when the load throws, and only the variables it added are removed', () => {
  const env: NodeJS.ProcessEnv = { KEPT: 'mine' };
  const failing = () =>
    withLoadEnvironment(
      () => {
        expect(env).toEqual({ KEPT: 'mine', ADDED: 'no' });
        throw new Error('dlopen failed');
      },
      { KEPT: 'ours', ADDED: 'no' },
      env,
    );
  expect(failing).toThrow('dlopen failed');
  expect(env).toEqual({ KEPT: 'mine' });
});
