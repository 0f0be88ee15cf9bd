// Preloaded into a CLI child by a test (`node --require signal-at-line.js dist/cli.js ...`): the child sends itself
// PACE_TEST_SIGNAL right after it writes a line of stdout matching PACE_TEST_SIGNAL_AT (a regular expression), once.
// A stop that waits for the child's own progress, not for the test to notice it: the child cannot run on past that
// line first, however fast or loaded the machine is. stdout to a pipe or a file is written synchronously, so the
// line is out before the signal. With SIGSTOP the child freezes right there, until the test sends SIGCONT; any
// other signal is handled as one from outside would be, at the child's next turn of its event loop.
'use strict';
const pattern = new RegExp(process.env.PACE_TEST_SIGNAL_AT, 'm');
const signal = process.env.PACE_TEST_SIGNAL;
// Not passed on to the processes the child starts (pace launch's ranks, for one).
delete process.env.PACE_TEST_SIGNAL_AT;
delete process.env.PACE_TEST_SIGNAL;
let sent = false;
const write = process.stdout.write;
process.stdout.write = function (chunk, ...rest) {
  const result = write.call(this, chunk, ...rest);
  if (!sent && pattern.test(String(chunk))) {
    sent = true;
    process.kill(process.pid, signal);
  }
  return result;
};
