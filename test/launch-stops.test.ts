// How `pace launch` (launch()) reads the way its ranks end around a stop, with stand-in ranks (plain node
// scripts): distributed.test.ts runs real `pace fit` ranks.
import fs from 'node:fs';
import path from 'node:path';

import { launch } from '../lib/distributed/launch';
import { makeTempDir } from './support/paths';

const temp = makeTempDir('launch-stops');
afterAll(() => temp.cleanup());

/** Runs `script` on two ranks (or `ranks`); `interrupt` aborts the launch (as Ctrl-C does) once both are ready. */
async function launchTwo(script: string, interrupt: boolean, ranks = 2) {
  const ready = path.join(temp.dir, `ready-${Math.random()}`);
  fs.mkdirSync(ready);
  const lines: string[] = [];
  const controller = new AbortController();
  const launched = launch(
    [process.execPath, '-e', script, ready],
    { nprocPerNode: ranks, graceSeconds: 2 },
    { signal: controller.signal, log: (line) => lines.push(line) },
  );
  if (interrupt) {
    const deadline = Date.now() + 20_000;
    while (fs.readdirSync(ready).length < 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    controller.abort('SIGINT');
  }
  return { result: await launched, lines };
}

const markReady = "require('fs').writeFileSync(require('path').join(process.argv[1], process.env.RANK), '');";

/**
 * A script in which rank 0 exits with `zeroCode` and rank 1, 300 ms after rank 0 has (counted from a mark rank 0
 * leaves as it exits, not from start-up, which may differ by more between the two), with `oneCode`. Rank 0 exits
 * only once rank 1 is running: the launcher's grace period starts at rank 0's exit, and a rank 1 still starting
 * on a loaded machine would spend it before it could count its 300 ms.
 */
const exitsInTurn = (zeroCode: number, oneCode: number) => `const fs = require('fs');
  const path = require('path');
  const mark = path.join(process.argv[1], 'zero-exits');
  const oneRuns = path.join(process.argv[1], 'one-runs');
  const poll = (done, then) => (done() ? then() : setTimeout(() => poll(done, then), 10));
  if (process.env.RANK === '0') {
    poll(() => fs.existsSync(oneRuns), () => {
      fs.writeFileSync(mark, '');
      process.exit(${zeroCode});
    });
  } else {
    fs.writeFileSync(oneRuns, '');
    poll(() => fs.existsSync(mark), () => setTimeout(() => process.exit(${oneCode}), 300));
  }`;

test('ranks that stop with the others (an interrupt on another node) end the launch as stopped, not failed', async () => {
  // Bug: a rank exiting 130 after an agreed stop was reported as a failure by a launcher that was not interrupted.
  const { result, lines } = await launchTwo('setTimeout(() => process.exit(130), 200);', false);
  expect(result).toEqual({ exitCode: 130 });
  expect(lines).toEqual([]);
  // A rank that does not stop with them is stopped after the grace period, not waited for.
  const started = Date.now();
  const lingering = await launchTwo(
    "if (process.env.RANK === '0') setTimeout(() => {}, 60000); else setTimeout(() => process.exit(130), 200);",
    false,
  );
  expect(lingering.result).toEqual({ exitCode: 130 });
  expect(lingering.lines).toEqual([]);
  expect(Date.now() - started).toBeLessThan(15_000);
  // Likewise one that answers the launcher's SIGTERM with exit 143, as pace fit does.
  const answering = await launchTwo(
    `process.on('SIGTERM', () => process.exit(143));
    if (process.env.RANK === '0') setTimeout(() => {}, 60000); else setTimeout(() => process.exit(130), 200);`,
    false,
  );
  expect(answering.result).toEqual({ exitCode: 130 });
  expect(answering.lines).toEqual([]);
}, 45_000);

test('after an interrupt, a rank that fails because a peer died of it is said, and the launch ends as stopped', async () => {
  // Bug: Ctrl-C while rank 1 was still loading killed it; rank 0, already in a collective, failed to reach it and
  // exited 1, and the launcher reported rank 0's failure (exit 1) instead of the stop (130).
  // The handler before the ready mark: the interrupt follows the mark at once.
  const script = `if (process.env.RANK === '0') process.on('SIGINT', () => setTimeout(() => process.exit(1), 100));
    ${markReady}
    setTimeout(() => {}, 30000);`;
  const { result, lines } = await launchTwo(script, true);
  expect(result).toEqual({ exitCode: 130 });
  expect(lines).toEqual([
    expect.stringMatching(/^pace launch: rank 0 \(pid \d+\) exited with code 1 after the interrupt$/),
  ]);
});

test('a rank failing on its own is still a failure that stops the others', async () => {
  const script = "if (process.env.RANK === '1') process.exit(4); setTimeout(() => {}, 30000);";
  const { result, lines } = await launchTwo(script, false);
  expect(result).toMatchObject({ exitCode: 4, failedRank: 1 });
  expect(lines[0]).toMatch(/^pace launch: rank 1 \(pid \d+\) exited with code 4; stopping the other ranks$/);
}, 30_000);

test('a rank that fails in a collective (exit 3) is not named the cause when another rank fails otherwise', async () => {
  // Bug: rank 1 failed (a missing file) and its peer's collective failed at once; the peer's exit could reach the
  // launcher first, which then named rank 0 (a near-tie, 3 runs in 13). Here rank 0's exit comes 300 ms first.
  const { result, lines } = await launchTwo(exitsInTurn(3, 1), false);
  expect(result).toEqual({
    exitCode: 1,
    failedRank: 1,
    failure: expect.stringMatching(/^rank 1 \(pid \d+\) exited with code 1$/),
  });
  expect(lines).toEqual([
    expect.stringMatching(
      /^pace launch: rank 0 \(pid \d+\) exited with code 3 \(a collective failed\); stopping the other ranks$/,
    ),
    expect.stringMatching(/^pace launch: rank 1 \(pid \d+\) exited with code 1$/),
  ]);
  // A rank still running a grace period after another's collective failed, stopped by the launcher, is the one
  // the others waited for (bug: the victim, rank 0 here, was named, and the hung rank never).
  const stopped = await launchTwo(
    "if (process.env.RANK === '0') process.exit(3); else setInterval(() => {}, 1000);",
    false,
  );
  const hung =
    /^rank 1 \(pid \d+\) did not end within 2 s of rank 0's failed collective \(hung, or busy outside the collectives: most likely the rank it waited for\); stopped by the launcher$/;
  expect(stopped.result).toEqual({ exitCode: 3, failedRank: 1, failure: expect.stringMatching(hung) });
  expect(stopped.lines).toEqual([
    expect.stringMatching(/^pace launch: rank 0 \(pid \d+\) exited with code 3 \(a collective failed\); stopping/),
    expect.stringMatching(new RegExp(`^pace launch: ${hung.source.slice(1)}`)),
  ]);
  // Named too when it answers the launcher's SIGTERM with exit 143, as pace fit does (bug: taken for a rank that
  // stopped with the others, and the victim named).
  const answered = await launchTwo(
    `process.on('SIGTERM', () => process.exit(143));
    if (process.env.RANK === '0') process.exit(3); else setInterval(() => {}, 1000);`,
    false,
  );
  expect(answered.result).toEqual({ exitCode: 3, failedRank: 1, failure: expect.stringMatching(hung) });
  // Two such ranks are each said (bug: the second line repeated the first rank's number and pid).
  const twoHung = await launchTwo(
    `process.on('SIGTERM', () => process.exit(143));
    if (process.env.RANK === '0') process.exit(3); else setInterval(() => {}, 1000);`,
    false,
    3,
  );
  const said = twoHung.lines.slice(1).map((line) => /rank (\d) \(pid (\d+)\) did not end/.exec(line)?.slice(1, 3));
  expect(said.map((match) => match?.[0]).sort()).toEqual(['1', '2']);
  expect(new Set(said.map((match) => match?.[1])).size).toBe(2);
  // With no other failure, the first collective failure is the launch's.
  const alone = await launchTwo(exitsInTurn(3, 3), false);
  expect(alone.result).toEqual({
    exitCode: 3,
    failedRank: 0,
    failure: expect.stringMatching(/^rank 0 \(pid \d+\) exited with code 3$/),
  });
});
