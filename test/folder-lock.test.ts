// A held lock's heartbeat (lib/folder-lock.ts), under fake timers: the interval runs when the test advances it.
import fs from 'node:fs';
import path from 'node:path';

import { takeLock } from '../lib/folder-lock';
import { makeTempDir } from './support/paths';

const temp = makeTempDir('folder-lock');
afterAll(() => temp.cleanup());
afterEach(() => jest.useRealTimers());

const timing = { heartbeatSeconds: 0.05, staleSeconds: 120 };
const use = { folder: 'test folder', user: 'test' };

test("the heartbeat keeps the lock fresh on the file system's clock, not this host's", () => {
  // Bug: the heartbeat stamped the lock with this host's time; a host whose clock ran 5 minutes behind the file
  // server's left a lock that every other host took for untouched those 5 minutes, and took over (after 120 s).
  const dir = fs.mkdtempSync(path.join(temp.dir, 'skewed-'));
  const lock = path.join(dir, 'test.lock');
  jest.useFakeTimers({ now: Date.now() - 3_600_000 }); // this host's clock an hour behind
  const release = takeLock(dir, lock, use, timing);
  try {
    const before = fs.readFileSync(lock, 'utf8');
    const old = new Date(Date.now() - 7_200_000);
    fs.utimesSync(lock, old, old); // untouched for an hour (by the file system's clock) before the heartbeat
    jest.advanceTimersByTime(60);
    const probe = path.join(dir, 'probe');
    fs.writeFileSync(probe, ''); // the file system's clock now
    const lag = (fs.statSync(probe).mtimeMs - fs.statSync(lock).mtimeMs) / 1000;
    expect(lag).toBeLessThan(5);
    expect(lag).toBeGreaterThan(-5);
    expect(fs.readFileSync(lock, 'utf8')).toBe(before); // rewritten with the same holder
  } finally {
    jest.useRealTimers();
    release();
  }
  expect(fs.existsSync(lock)).toBe(false);
});

test('a lock removed, or rewritten by another holder, is reported lost once and left as it is', () => {
  for (const [name, replace, said] of [
    ['removed', (lock: string) => fs.rmSync(lock), 'removed'],
    [
      'taken',
      (lock: string) => fs.writeFileSync(lock, JSON.stringify({ pid: 4242, hostname: 'elsewhere.example' })),
      'held now by process 4242 on host elsewhere.example',
    ],
  ] as const) {
    const dir = fs.mkdtempSync(path.join(temp.dir, `${name}-`));
    const lock = path.join(dir, 'test.lock');
    jest.useFakeTimers();
    const lost: string[] = [];
    const release = takeLock(dir, lock, use, timing, (now) => lost.push(now));
    const before = fs.existsSync(lock) ? fs.readFileSync(lock, 'utf8') : undefined;
    expect(before).toContain(String(process.pid));
    replace(lock);
    const after = fs.existsSync(lock) ? fs.readFileSync(lock, 'utf8') : undefined;
    jest.advanceTimersByTime(500); // ten heartbeats
    expect([name, lost]).toEqual([name, [said]]);
    expect(fs.existsSync(lock) ? fs.readFileSync(lock, 'utf8') : undefined).toBe(after);
    release();
    expect(fs.existsSync(lock) ? fs.readFileSync(lock, 'utf8') : undefined).toBe(after); // another's: left
    jest.useRealTimers();
  }
});
