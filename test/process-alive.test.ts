import { spawn } from 'node:child_process';
import fs from 'node:fs';

import { processAlive } from '../lib/process-alive';
import { testIf } from './support/test-if';

// Linux: a zombie is told by its state in /proc.
const onLinux = testIf(fs.existsSync('/proc/self/stat'), 'no /proc/self/stat (not Linux)');

onLinux('a running process is alive; an exited one, reaped or a zombie, is not', async () => {
  // Bug: a zombie (exited, its parent not reaping it, as after a SIGKILLed launcher) still answered kill(pid, 0), so
  // the lock of a run it had held was refused as in use.
  const parent = spawn('sh', ['-c', 'sleep 0.1 & echo $!; exec sleep 30'], { stdio: ['ignore', 'pipe', 'ignore'] });
  try {
    const zombie = await new Promise<number>((resolve) =>
      parent.stdout.once('data', (chunk: Buffer) => resolve(Number(chunk.toString().trim()))),
    );
    const state = () => fs.readFileSync(`/proc/${zombie}/stat`, 'utf8').split(') ')[1][0];
    const deadline = Date.now() + 10_000;
    while (state() !== 'Z' && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20));
    expect(state()).toBe('Z'); // exec'd sleep never reaps it
    expect(processAlive(zombie)).toBe(false);
    expect(processAlive(parent.pid!)).toBe(true);
    expect(processAlive(process.pid)).toBe(true);
  } finally {
    parent.kill('SIGKILL');
  }
  await new Promise((resolve) => parent.once('exit', resolve));
  expect(processAlive(parent.pid!)).toBe(false);
});
